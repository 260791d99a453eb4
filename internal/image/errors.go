package image

import "fmt"

// classError is an error of an errdefs class whose message does not repeat the class name.
type classError struct {
	class error
	msg   string
}

func (e *classError) Error() string { return e.msg }
func (e *classError) Unwrap() error { return e.class }

// errf formats a message (no %w) and gives it class, an errdefs error.
func errf(class error, format string, args ...any) error {
	return &classError{class: class, msg: fmt.Sprintf(format, args...)}
}
