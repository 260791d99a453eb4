// Package errdefs holds ov's error classes. Every package wraps one of them with %w and context;
// callers test the class with errors.Is. Classes become HTTP statuses at the API edge (see HTTPStatus)
// and exit codes in ovctl, and nowhere else.
package errdefs

import (
	"errors"
	"net/http"
)

var (
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: an object with that name or key exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: the request is valid but clashes with current state (in use, overlap, lost race).
	ErrConflict = errors.New("conflict")
	// ErrInvalidArgument: the request itself is malformed; retrying it unchanged cannot succeed.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrExhausted: a pool (addresses, VNIs, ports) has nothing left to hand out.
	ErrExhausted = errors.New("exhausted")
	// ErrUnavailable: a dependency (etcd, the controller, the agent) cannot be reached; retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrUnauthorized: the request carries no valid token.
	ErrUnauthorized = errors.New("unauthorized")
)

// classes lists every class with its HTTP status, most specific first.
var classes = []struct {
	err    error
	status int
}{
	{ErrNotFound, http.StatusNotFound},
	{ErrAlreadyExists, http.StatusConflict},
	{ErrConflict, http.StatusConflict},
	{ErrInvalidArgument, http.StatusBadRequest},
	{ErrExhausted, http.StatusInsufficientStorage},
	{ErrUnavailable, http.StatusServiceUnavailable},
	{ErrUnauthorized, http.StatusUnauthorized},
}

// HTTPStatus maps an error to the status the API answers with; unknown errors are 500.
func HTTPStatus(err error) int {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.status
		}
	}
	return http.StatusInternalServerError
}

// Code names the class of err for the wire ("not_found", ...), or "internal".
func Code(err error) string {
	switch {
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrAlreadyExists):
		return "already_exists"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrInvalidArgument):
		return "invalid_argument"
	case errors.Is(err, ErrExhausted):
		return "exhausted"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrUnauthorized):
		return "unauthorized"
	}
	return "internal"
}

// FromCode is the inverse of Code: it returns the class for a wire code, or nil.
func FromCode(code string) error {
	for _, c := range classes {
		if Code(c.err) == code {
			return c.err
		}
	}
	return nil
}

// wireError carries a message from the wire and the class named by its code.
type wireError struct {
	msg   string
	class error
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.class }

// FromWire rebuilds an error received over the API: the message is kept as is and errors.Is works
// against the class named by code.
func FromWire(code, msg string) error {
	return &wireError{msg: msg, class: FromCode(code)}
}
