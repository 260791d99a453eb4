package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/atomicfile"
)

// create sets up the container's stdio and runs `runtime create`.
func (s *Shim) create() error {
	lf, err := openLogFile(s.cfg.LogPath)
	if err != nil {
		return err
	}
	s.logf = lf
	args := []string{"create", "--bundle", s.cfg.Bundle, "--pid-file", filepath.Join(s.cfg.Bundle, "init.pid")}
	var stdio []*os.File
	var closeAfter []*os.File
	defer func() {
		for _, f := range closeAfter {
			f.Close()
		}
	}()
	var cs *consoleSocket
	if s.cfg.Tty {
		cs, err = newConsoleSocket(s.scratchSocket("console"))
		if err != nil {
			return err
		}
		defer cs.close()
		args = append(args, "--console-socket", cs.path)
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		closeAfter = append(closeAfter, null)
		stdio = []*os.File{null, null, null}
	} else {
		var stdinR *os.File
		if s.cfg.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return err
			}
			stdinR, s.stdin = r, w
		} else {
			stdinR, err = os.Open(os.DevNull)
			if err != nil {
				return err
			}
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			return err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			return err
		}
		closeAfter = append(closeAfter, stdinR, outW, errW)
		stdio = []*os.File{stdinR, outW, errW}
		s.copyOutput(outR, "stdout", api.FrameStdout)
		s.copyOutput(errR, "stderr", api.FrameStderr)
	}
	type recv struct {
		f   *os.File
		err error
	}
	var consoleCh chan recv
	if cs != nil {
		consoleCh = make(chan recv, 1)
		go func() { f, err := cs.receive(); consoleCh <- recv{f, err} }()
	}
	err = s.runtime(stdio, nil, append(args, s.cfg.ID)...)
	if cs != nil {
		if err != nil {
			cs.close()
		}
		r := <-consoleCh
		if err == nil && r.err != nil {
			err = fmt.Errorf("receive the container's terminal: %w", r.err)
		}
		if r.f != nil {
			if err != nil {
				r.f.Close()
			} else {
				s.console, s.stdin = r.f, r.f
				s.copyOutput(r.f, "stdout", api.FrameStdout)
			}
		}
	}
	if err != nil {
		for _, f := range closeAfter {
			f.Close()
		}
		closeAfter = nil
		if s.stdin != nil {
			s.stdin.Close()
		}
		// Close our ends so the copiers stop; the container never ran.
		s.ioDone.Wait()
		return err
	}
	b, err := os.ReadFile(filepath.Join(s.cfg.Bundle, "init.pid"))
	if err != nil {
		return fmt.Errorf("read the container's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("bad pid file %q", b)
	}
	s.state = api.ContainerState{Status: api.StateCreated, Pid: pid}
	go s.monitor(s.reaper.watch(pid))
	return nil
}

// monitor waits for the container's init to exit, lets the output drain, records the exit and wakes
// every waiter.
func (s *Shim) monitor(c <-chan unix.WaitStatus) {
	ws := <-c
	t0 := time.Now()
	drained := make(chan struct{})
	go func() { s.ioDone.Wait(); close(drained) }()
	t := time.NewTimer(drainTimeout)
	select {
	case <-drained:
	case <-t.C:
		s.log.Warn("container output still open after its init exited; closing the log")
	}
	t.Stop()
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

func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

func (s *Shim) getState() api.ContainerState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}
