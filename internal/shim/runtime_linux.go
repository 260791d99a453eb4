package shim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// StartErrorCode maps a runtime's error message to docker's exit codes: 127 when the command was not
// found, 126 when it cannot be invoked, 125 for every other engine error.
func StartErrorCode(msg string) int {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "executable file not found"), strings.Contains(m, "no such file or directory"), strings.Contains(m, "not found in $path"):
		return 127
	case strings.Contains(m, "permission denied"), strings.Contains(m, "is a directory"), strings.Contains(m, "exec format error"):
		return 126
	}
	return 125
}

// runtime runs the OCI runtime with args and the given stdio (nil: a scratch file that is read back
// into the error). It returns an error carrying the runtime's own message when it fails.
func (s *Shim) runtime(stdio []*os.File, extra []*os.File, args ...string) error {
	n := s.seq.Add(1)
	logPath := filepath.Join(s.cfg.Bundle, fmt.Sprintf("runtime-%d.log", n))
	defer os.Remove(logPath)
	full := append([]string{"--root", s.cfg.RuntimeRoot, "--log", logPath, "--log-format", "json"}, args...)
	cmd := exec.Command(s.cfg.Runtime, full...)
	var scratch *os.File
	if stdio == nil {
		f, err := os.CreateTemp(s.cfg.Bundle, "runtime-out-*")
		if err != nil {
			return err
		}
		scratch = f
		defer func() { f.Close(); os.Remove(f.Name()) }()
		null, err := os.Open(os.DevNull)
		if err != nil {
			return err
		}
		defer null.Close()
		stdio = []*os.File{null, f, f}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	cmd.ExtraFiles = extra
	t0 := time.Now()
	ws, err := s.reaper.run(cmd)
	s.log.Debug("runtime", "args", args[0], "took", time.Since(t0))
	if err != nil {
		return fmt.Errorf("run %s: %w", s.cfg.Runtime, err)
	}
	if ws.Exited() && ws.ExitStatus() == 0 {
		return nil
	}
	msg := runtimeLogError(logPath)
	if msg == "" && scratch != nil {
		b, _ := os.ReadFile(scratch.Name())
		msg = strings.TrimSpace(string(b))
	}
	if msg == "" {
		msg = fmt.Sprintf("exit status %d", exitCode(ws))
	}
	return fmt.Errorf("%s %s: %s", filepath.Base(s.cfg.Runtime), args[0], msg)
}

// runtimeLogError returns the last error message of a runtime's log file (runc's JSON lines, or
// plain text).
func runtimeLogError(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		line := sc.Text()
		if json.Unmarshal([]byte(line), &e) == nil {
			if strings.EqualFold(e.Level, "error") || strings.EqualFold(e.Level, "fatal") {
				last = e.Msg
			}
		} else if strings.TrimSpace(line) != "" {
			last = strings.TrimSpace(line)
		}
	}
	return last
}

// scratchSocket names a unix socket beside the shim's own (bundle paths can exceed the 108 bytes a
// socket path may have).
func (s *Shim) scratchSocket(what string) string {
	return strings.TrimSuffix(s.cfg.Socket, ".sock") + "-" + what + ".sock"
}
