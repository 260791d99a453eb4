package bridge

import "fmt"

// classError is an error whose message is exactly what the user reads and whose class (an errdefs error)
// is reachable with errors.Is.
type classError struct {
	msg   string
	class error
}

func (e *classError) Error() string { return e.msg }
func (e *classError) Unwrap() error { return e.class }

// errorf returns an error of class with the formatted message (no class suffix appended).
func errorf(class error, format string, args ...any) error {
	return &classError{msg: fmt.Sprintf(format, args...), class: class}
}
