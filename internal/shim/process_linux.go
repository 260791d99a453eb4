package shim

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/atomicfile"
)

// create sets up the container's stdio and runs `runtime create`.
func (s *Shim) create() error {
	lf, err := openLogFile(s.cfg.LogPath, s.cfg.LogMaxSize, s.cfg.LogMaxFile)
	if err != nil {
		return err
	}
	s.logf = lf
	pidFile := filepath.Join(s.cfg.Bundle, "init.pid")
	args := []string{"create", "--bundle", s.cfg.Bundle, "--pid-file", pidFile}
	if s.cfg.Tty {
		err = s.createWithTerminal(args)
	} else {
		err = s.createWithPipes(args)
	}
	if err != nil {
		if s.stdin != nil {
			s.stdin.Close()
		}
		// Our ends are closed so the copiers stop; the container never ran.
		s.ioDone.Wait()
		return err
	}
	pid, err := readPidFile(pidFile)
	if err != nil {
		return fmt.Errorf("container %s: %w", api.ShortID(s.cfg.ID), err)
	}
	s.state = api.ContainerState{Status: api.StateCreated, Pid: pid}
	go s.monitor(s.reaper.watch(pid))
	return nil
}

// createWithTerminal runs `runtime create` with a console socket and keeps the pty master the runtime
// sends as the container's stdin and output.
func (s *Shim) createWithTerminal(args []string) error {
	f, err := s.runWithTerminal(s.scratchSocket("console"), args)
	if err != nil {
		return err
	}
	s.console, s.stdin = f, f
	s.copyOutput(f, "stdout", api.FrameStdout)
	return nil
}

// createWithPipes runs `runtime create` with pipes for stdio (stdin from /dev/null unless the
// container keeps it open) and copies the container's output.
func (s *Shim) createWithPipes(args []string) error {
	p, err := openPipes(s.cfg.Stdin)
	if err != nil {
		return err
	}
	s.stdin = p.stdin
	s.copyOutput(p.stdout, "stdout", api.FrameStdout)
	s.copyOutput(p.stderr, "stderr", api.FrameStderr)
	err = s.runtime(p.theirs, nil, append(args, s.cfg.ID)...)
	closeAll(p.theirs)
	return err
}

// monitor waits for the container's init to exit, lets the output drain, records the exit and wakes
// every waiter.
func (s *Shim) monitor(c <-chan unix.WaitStatus) {
	ws := <-c
	t0 := time.Now()
	if !waitDrained(&s.ioDone) {
		s.log.Warn("container output still open after its init exited; closing the log")
	}
	s.log.Debug("init exited; output drained", "took", time.Since(t0))
	s.ioMu.Lock()
	_ = s.logf.flush()
	s.ioMu.Unlock()
	s.mu.Lock()
	s.state.Status = api.StateExited
	s.state.ExitCode = exitCode(ws)
	s.state.FinishedAt = time.Now().UTC()
	st := s.state
	s.mu.Unlock()
	if err := writeFileAtomic(s.cfg.ExitFile, st); err != nil {
		s.log.Error("write exit file", "err", err)
	}
	s.log.Info("container exited", "exitCode", st.ExitCode)
	close(s.exited)
}

// writeFileAtomic replaces path with v as JSON, durably: the exit file lives under the agent's root
// and must survive a crash of the machine whole (the agent reads it at start when the shim is gone).
func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.WriteSync(path, b, 0o600)
}

func (s *Shim) getState() api.ContainerState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}
