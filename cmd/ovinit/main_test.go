package main

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the tests run this binary as ovinit: with OVINIT_TEST_MAIN set it is the init.
func TestMain(m *testing.M) {
	if os.Getenv("OVINIT_TEST_MAIN") != "" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func ovinit(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"--"}, args...)...)
	cmd.Env = append(os.Environ(), "OVINIT_TEST_MAIN=1")
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return ee.ExitCode()
}

// TestExitStatus: the child's exit status, 128+n for a signal, 127 for a command not found.
func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"exit code", []string{"sh", "-c", "exit 7"}, 7},
		{"success", []string{"true"}, 0},
		{"killed by a signal", []string{"sh", "-c", "kill -9 $$"}, 137},
		{"not found", []string{"ovinit-no-such-command"}, 127},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(t, ovinit(tc.args...).Run()); got != tc.want {
				t.Errorf("exit %d, want %d", got, tc.want)
			}
		})
	}
	if got := exitCode(t, func() *exec.Cmd {
		c := exec.Command(os.Args[0])
		c.Env = append(os.Environ(), "OVINIT_TEST_MAIN=1")
		return c
	}().Run()); got == 0 {
		t.Errorf("no command: exit 0, want a usage error")
	}
}

// TestForwardsSignals: a TERM sent to the init reaches the child, whose death by it is the init's
// exit status.
func TestForwardsSignals(t *testing.T) {
	cmd := ovinit("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the init has started sleep
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if got := exitCode(t, err); got != 143 || time.Since(t0) > 5*time.Second {
		t.Errorf("after SIGTERM: exit %d after %v, want 143 at once (the child killed by the forwarded TERM)", got, time.Since(t0))
	}
}
