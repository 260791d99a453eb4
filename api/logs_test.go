package api

import (
	"errors"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

func TestParseTail(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{in: "", want: -1},
		{in: "all", want: -1},
		{in: "0", want: 0},
		{in: "25", want: 25},
		{in: "-1", wantErr: true},
		{in: "ten", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTail(tt.in)
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("ParseTail(%q) = %d, %v; want an invalid argument", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseTail(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}
