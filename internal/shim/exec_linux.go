package shim

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/api"
)

// ExecRequest is the body of the shim's POST /exec: the OCI process to run in the container.
type ExecRequest struct {
	Process specs.Process `json:"process"`
	Stdin   bool          `json:"stdin,omitempty"`
}

// exec runs req's process in the container, streams its output to fw and feeds it the input frames
// of in; it returns the process's exit code, or 125-127 and an error when it could not start.
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
	x, err := s.startExec(args, req, s.scratchSocket(fmt.Sprintf("exec-%d", n)))
	if err != nil {
		return StartErrorCode(err.Error()), err
	}
	defer closeAll(x.mine)
	var wg sync.WaitGroup
	for _, o := range []struct {
		r *os.File
		t byte
	}{{x.stdout, api.FrameStdout}, {x.stderr, api.FrameStderr}} {
		if o.r == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(fw.StreamWriter(o.t), o.r)
		}()
	}
	pid, err := readPidFile(pidPath)
	if err != nil {
		return 125, fmt.Errorf("exec: %w", err)
	}
	wait := s.reaper.watch(pid)
	go s.readInput(in, x.stdin, x.console, x.console == nil)
	ws := <-wait
	waitDrained(&wg)
	return exitCode(ws), nil
}

// execIO is the shim's side of an exec'd process's stdio.
type execIO struct {
	stdin, console *os.File   // where input frames go; console is nil without a terminal
	stdout, stderr *os.File   // output to stream; stderr is nil with a terminal
	mine           []*os.File // closed once the process is done
}

// startExec runs `runtime exec` with a terminal (console: the scratch socket it comes through) or
// with pipes, as req asks.
func (s *Shim) startExec(args []string, req ExecRequest, console string) (*execIO, error) {
	if req.Process.Terminal {
		f, err := s.runWithTerminal(console, args)
		if err != nil {
			return nil, err
		}
		return &execIO{stdin: f, console: f, stdout: f, mine: []*os.File{f}}, nil
	}
	p, err := openPipes(req.Stdin)
	if err != nil {
		return nil, err
	}
	err = s.runtime(p.theirs, nil, append(args, s.cfg.ID)...)
	closeAll(p.theirs)
	ours := []*os.File{p.stdin, p.stdout, p.stderr}
	if err != nil {
		closeAll(ours)
		return nil, err
	}
	return &execIO{stdin: p.stdin, stdout: p.stdout, stderr: p.stderr, mine: ours}, nil
}
