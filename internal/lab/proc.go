package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ovnet/ov/internal/errdefs"
)

// Proc is a long-lived process of the lab: the command that starts it, the same at every start (same
// flags, data directory, tokens and ports), and the pid of its last start. It is kept in lab.json, so a
// process started by one ovlab invocation can be killed and started again by another.
type Proc struct {
	Netns string   `json:"netns"` // network namespace it runs in (under /run/netns)
	Argv  []string `json:"argv"`  // program and arguments
	Log   string   `json:"log"`   // file its output is appended to
	PID   int      `json:"pid"`   // pid of its last start; 0 when the lab stopped it
}

// Running reports whether the process of the last start still runs: the pid is alive and still runs
// this program (a pid is reused once its process is gone, after a reboot for instance).
func (p Proc) Running() bool {
	if !alive(p.PID) || len(p.Argv) == 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
	if err != nil {
		return false
	}
	prog, _, _ := strings.Cut(string(b), "\x00")
	return prog == p.Argv[0] || prog == "nsenter" // nsenter has not exec'd the program yet
}

// startProc starts p, records its pid in the lab state and waits until ready returns nil (ready may
// be nil). Starting a process that runs is an error: it would run twice on the same data.
func (l *Lab) startProc(ctx context.Context, what string, p *Proc, ready func() error) error {
	if len(p.Argv) == 0 {
		return fmt.Errorf("%s: the lab's state does not say how to start it (made by an older ovlab?); take the lab down and up again: %w", what, errdefs.ErrNotFound)
	}
	if p.Running() {
		return fmt.Errorf("%s is already running (pid %d); kill it first: %w", what, p.PID, errdefs.ErrAlreadyExists)
	}
	pid, err := spawn(p.Netns, p.Log, p.Argv...)
	if err != nil {
		return err
	}
	p.PID = pid
	if err := l.save(); err != nil {
		return err
	}
	if ready == nil {
		return nil
	}
	return l.waitReady(ctx, what, p, ready)
}

// waitReady waits up to 30 s until ready returns nil, failing early when p exits.
func (l *Lab) waitReady(ctx context.Context, what string, p *Proc, ready func() error) error {
	pid := p.PID
	return waitFor(ctx, 30*time.Second, what, func() error {
		if !alive(pid) {
			return fmt.Errorf("%s exited; see %s", filepath.Base(p.Argv[0]), p.Log)
		}
		return ready()
	})
}

// killProc sends sig to p (SIGKILL after 5 s if it is still there), waits until it is gone and
// records that. Killing a process that does not run is an error.
func (l *Lab) killProc(what string, p *Proc, sig syscall.Signal) error {
	if !p.Running() {
		p.PID = 0
		_ = l.save()
		return fmt.Errorf("%s is not running: %w", what, errdefs.ErrConflict)
	}
	stop(p.PID, sig, 5*time.Second)
	p.PID = 0
	return l.save()
}

// terminate stops p gracefully (SIGTERM, then SIGKILL after 5 s) if it runs.
func (p *Proc) terminate() {
	if p.Running() {
		stop(p.PID, syscall.SIGTERM, 5*time.Second)
	}
	p.PID = 0
}
