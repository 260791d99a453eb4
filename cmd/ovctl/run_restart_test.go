package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/api"
)

// TestRunRestartFlag: --restart reaches the create request as docker's policy; --rm with a policy is
// refused before anything is sent.
func TestRunRestartFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want api.RestartPolicy
		err  string
	}{
		{[]string{"busybox"}, api.RestartPolicy{}, ""},
		{[]string{"--restart", "no", "busybox"}, api.RestartPolicy{}, ""},
		{[]string{"--restart", "on-failure:2", "busybox"}, api.RestartPolicy{Name: "on-failure", MaximumRetryCount: 2}, ""},
		{[]string{"--restart=unless-stopped", "busybox"}, api.RestartPolicy{Name: "unless-stopped"}, ""},
		{[]string{"--restart", "always", "--rm", "busybox"}, api.RestartPolicy{}, "Conflicting options: --restart and --rm"},
		{[]string{"--restart", "always:1", "busybox"}, api.RestartPolicy{}, "on-failure"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var f runFlags
			cmd := &cobra.Command{}
			f.register(cmd, true)
			if err := cmd.Flags().Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			req, err := f.request(cmd.Flags().Args())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("request: %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil || req.RestartPolicy != tc.want {
				t.Fatalf("request: %+v, %v; want policy %+v", req.RestartPolicy, err, tc.want)
			}
		})
	}
}

func TestRestartingStatus(t *testing.T) {
	st := api.ContainerState{Status: api.StateRestarting, ExitCode: 3, FinishedAt: time.Now().Add(-2 * time.Second)}
	if got := status(st); got != "Restarting (3) 2 seconds ago" {
		t.Errorf("status %q, want docker's %q", got, "Restarting (3) 2 seconds ago")
	}
}
