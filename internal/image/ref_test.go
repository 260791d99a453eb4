package image

import (
	"errors"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

func TestNormalizeRef(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{in: "busybox", want: "busybox:latest"},
		{in: "busybox:1.36", want: "busybox:1.36"},
		{in: "docker.io/library/busybox", want: "busybox:latest"},
		{in: "index.docker.io/library/busybox:1", want: "busybox:1"},
		{in: "docker.io/team/app:v2", want: "team/app:v2"},
		{in: "example.com/team/app", want: "example.com/team/app:latest"},
		{in: "localhost:5000/app:dev", want: "localhost:5000/app:dev"},
		{in: "busybox@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", err: true},
		{in: "Bad Name", err: true},
		{in: "", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeRef(tc.in)
			if tc.err {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("NormalizeRef(%q) = %q, %v; want ErrInvalidArgument", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeRef(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"relative root", func(c *Config) { c.Root = "images" }, false},
		{"colon in root", func(c *Config) { c.Root = "/var/lib/a:b" }, false},
		{"no logger", func(c *Config) { c.Log = nil }, false},
		{"bad platform", func(c *Config) { c.Platform = "linux" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v; want ok=%v", err, tc.ok)
			}
		})
	}
}
