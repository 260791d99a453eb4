package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

func TestParseRestartPolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want RestartPolicy
		err  string // part of the error; "" for none
	}{
		{"no", RestartPolicy{Name: "no"}, ""},
		{"always", RestartPolicy{Name: "always"}, ""},
		{"unless-stopped", RestartPolicy{Name: "unless-stopped"}, ""},
		{"on-failure", RestartPolicy{Name: "on-failure"}, ""},
		{"on-failure:3", RestartPolicy{Name: "on-failure", MaximumRetryCount: 3}, ""},
		{"on-failure:0", RestartPolicy{Name: "on-failure"}, ""},
		{"on-failure:-1", RestartPolicy{}, "cannot be negative"},
		{"on-failure:x", RestartPolicy{}, "must be an integer"},
		{"always:3", RestartPolicy{}, "can only be used with 'on-failure'"},
		{"no:1", RestartPolicy{}, "can only be used with 'on-failure'"},
		{":3", RestartPolicy{}, "no policy provided before colon"},
		{"sometimes", RestartPolicy{}, "invalid restart policy 'sometimes'"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParseRestartPolicy(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("ParseRestartPolicy(%q) = %v, want an invalid-argument error with %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || p != tc.want {
				t.Fatalf("ParseRestartPolicy(%q) = %+v, %v; want %+v", tc.in, p, err, tc.want)
			}
		})
	}
}

func TestRestartPolicyString(t *testing.T) {
	for in, want := range map[RestartPolicy]string{
		{}:                   "no",
		{Name: "always"}:     "always",
		{Name: "on-failure"}: "on-failure",
		{Name: "on-failure", MaximumRetryCount: 2}: "on-failure:2",
	} {
		if got := in.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", in, got, want)
		}
	}
}

// Docker refuses --restart with --rm (a container removed at its exit cannot be restarted).
func TestRestartConflictsWithRm(t *testing.T) {
	c := ContainerCreate{Image: "busybox", AutoRemove: true, RestartPolicy: RestartPolicy{Name: RestartAlways}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "Conflicting options: --restart and --rm") {
		t.Fatalf("Validate = %v, want the --restart/--rm conflict", err)
	}
	c.RestartPolicy = RestartPolicy{Name: RestartNo}
	if err := c.Validate(); err != nil {
		t.Fatalf("--rm with --restart no: %v", err)
	}
	c = ContainerCreate{Image: "busybox", RestartPolicy: RestartPolicy{Name: "always", MaximumRetryCount: 1}}
	if err := c.Validate(); err == nil {
		t.Fatalf("Validate accepted always with a retry count")
	}
}
