package driver

import (
	"errors"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{in: "", want: Mode{Kind: ModeNetwork, Network: "bridge"}},
		{in: "host", want: Mode{Kind: ModeHost}},
		{in: "none", want: Mode{Kind: ModeNone}},
		{in: "container:web", want: Mode{Kind: ModeContainer, Container: "web"}},
		{in: "front", want: Mode{Kind: ModeNetwork, Network: "front"}},
		{in: "container:", wantErr: true},
		{in: "bad name", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseMode(%q) = %+v, %v; want %+v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseMode(%q) error %v is not invalid argument", tt.in, err)
		}
	}
}
