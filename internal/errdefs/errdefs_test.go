package errdefs

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
	}{
		{"not found", ErrNotFound, http.StatusNotFound},
		{"exists", ErrAlreadyExists, http.StatusConflict},
		{"conflict", ErrConflict, http.StatusConflict},
		{"invalid", ErrInvalidArgument, http.StatusBadRequest},
		{"exhausted", ErrExhausted, http.StatusInsufficientStorage},
		{"unavailable", ErrUnavailable, http.StatusServiceUnavailable},
		{"unauthorized", ErrUnauthorized, http.StatusUnauthorized},
		{"other", errors.New("boom"), http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wrapped := fmt.Errorf("network %q: %w", "front", tc.err)
			if got := HTTPStatus(wrapped); got != tc.status {
				t.Fatalf("HTTPStatus = %d, want %d", got, tc.status)
			}
			back := FromWire(Code(wrapped), wrapped.Error())
			if back.Error() != wrapped.Error() {
				t.Fatalf("message %q, want %q", back.Error(), wrapped.Error())
			}
			if tc.status != http.StatusInternalServerError && !errors.Is(back, tc.err) {
				t.Fatalf("errors.Is(FromWire(...), %v) = false", tc.err)
			}
		})
	}
}
