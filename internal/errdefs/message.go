package errdefs

// Message returns an error of class (one of the Err values) whose text is msg alone, without the
// class's name appended as wrapping with %w would: for messages that already say what is wrong.
func Message(class error, msg string) error { return &wireError{msg: msg, class: class} }
