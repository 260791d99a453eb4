package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/api"
)

// ExecRequest is the body of the shim's POST /exec: the OCI process to run in the container.
type ExecRequest struct {
	Process specs.Process `json:"process"`
	Stdin   bool          `json:"stdin,omitempty"`
}

func (s *Shim) exec(req ExecRequest, in io.Reader, fw *api.FrameWriter) (int, error) {
	n := s.seq.Add(1)
	procPath := filepath.Join(s.cfg.Bundle, fmt.Sprintf("exec-%d.json", n))
	pidPath := filepath.Join(s.cfg.Bundle, fmt.Sprintf("exec-%d.pid", n))
	defer os.Remove(procPath)
	defer os.Remove(pidPath)
	b, err := json.Marshal(req.Process)
	if err != nil {
		return 125, err
	}
	if err := os.WriteFile(procPath, b, 0o600); err != nil {
		return 125, err
	}
	args := []string{"exec", "--detach", "--pid-file", pidPath, "--process", procPath}
	var wg sync.WaitGroup
	copyTo := func(r *os.File, t byte) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(fw.StreamWriter(t), r)
		}()
	}
	var stdio []*os.File
	var mine []*os.File // our ends, closed when done
	var stdin, console *os.File
	if req.Process.Terminal {
		cs, err := newConsoleSocket(s.scratchSocket(fmt.Sprintf("exec-%d", n)))
		if err != nil {
			return 125, err
		}
		defer cs.close()
		args = append(args, "--console-socket", cs.path)
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return 125, err
		}
		defer null.Close()
		stdio = []*os.File{null, null, null}
		ch := make(chan *os.File, 1)
		go func() { f, _ := cs.receive(); ch <- f }()
		err = s.runtime(stdio, nil, append(args, s.cfg.ID)...)
		cs.close()
		f := <-ch
		if err != nil {
			if f != nil {
				f.Close()
			}
			return StartErrorCode(err.Error()), err
		}
		if f == nil {
			return 125, errors.New("exec: the runtime sent no terminal")
		}
		console, stdin = f, f
		mine = append(mine, f)
		copyTo(f, api.FrameStdout)
	} else {
		var theirs []*os.File
		var stdinR *os.File
		if req.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return 125, err
			}
			stdinR, stdin = r, w
			mine = append(mine, w)
		} else {
			stdinR, err = os.Open(os.DevNull)
			if err != nil {
				return 125, err
			}
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			return 125, err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			return 125, err
		}
		theirs = []*os.File{stdinR, outW, errW}
		stdio = theirs
		err = s.runtime(stdio, nil, append(args, s.cfg.ID)...)
		for _, f := range theirs {
			f.Close()
		}
		if err != nil {
			outR.Close()
			errR.Close()
			for _, f := range mine {
				f.Close()
			}
			return StartErrorCode(err.Error()), err
		}
		mine = append(mine, outR, errR)
		copyTo(outR, api.FrameStdout)
		copyTo(errR, api.FrameStderr)
	}
	defer func() {
		for _, f := range mine {
			f.Close()
		}
	}()
	pb, err := os.ReadFile(pidPath)
	if err != nil {
		return 125, fmt.Errorf("exec: read pid file: %w", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pb)))
	if pid <= 0 {
		return 125, fmt.Errorf("exec: bad pid file %q", pb)
	}
	wait := s.reaper.watch(pid)
	go s.readInput(in, stdin, console, console == nil)
	ws := <-wait
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	t := time.NewTimer(drainTimeout)
	select {
	case <-drained:
	case <-t.C:
	}
	t.Stop()
	return exitCode(ws), nil
}
