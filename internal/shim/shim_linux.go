package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ovnet/ov/internal/atomicfile"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// Config tells a shim which container it serves. Every path is absolute.
type Config struct {
	ID          string // container ID, the runtime's container name
	Bundle      string // OCI bundle directory (config.json); the shim keeps its scratch files here
	Runtime     string // OCI runtime binary (ovrt or runc)
	RuntimeRoot string // the runtime's --root
	Socket      string // unix socket the shim serves its API on
	LogPath     string // json-lines log file of the container's output
	ExitFile    string // written (atomically) with the final api.ContainerState when the container exits
	Tty         bool   // the container has a terminal (config.json process.terminal must agree)
	Stdin       bool   // keep the container's stdin open for attach
	Log         *slog.Logger
}

// ReadyMessage is what the shim writes to its ready pipe once the container is created (or failed).
type ReadyMessage struct {
	Pid      int    `json:"pid,omitempty"`
	Error    string `json:"error,omitempty"`
	ExitCode int    `json:"exitCode,omitempty"` // 125, 126 or 127 when Error is set
}

// drainTimeout bounds how long the shim waits for the container's output to end after its init
// exited (processes outside the container may still hold the pipes).
const drainTimeout = 2 * time.Second

// Shim serves one container.
type Shim struct {
	cfg    Config
	log    *slog.Logger
	reaper *reaper
	seq    atomic.Int64

	mu     sync.Mutex
	state  api.ContainerState
	exited chan struct{} // closed once state is final and the exit file is written

	ioMu    sync.Mutex // serialises log writes and broadcasts with subscriptions
	logf    *logFile
	subs    map[*subscriber]struct{}
	ioDone  sync.WaitGroup
	stdin   *os.File // write end of the container's stdin pipe, or the pty master
	console *os.File // pty master when Tty

	srv      *http.Server
	quit     chan struct{}
	quitOnce sync.Once
}

type frame struct {
	t byte
	p []byte
}

type subscriber struct {
	ch   chan frame
	done chan struct{}
}

// Run creates the container, reports on ready (then closes it) and serves the shim API until the
// container is deleted. It is the body of `ovagent shim`; the caller has made the process a session
// leader with its stdio on /dev/null.
func Run(ctx context.Context, cfg Config, ready *os.File) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Shim{cfg: cfg, log: cfg.Log.With("component", "shim", "container", api.ShortID(cfg.ID)),
		exited: make(chan struct{}), subs: map[*subscriber]struct{}{}, quit: make(chan struct{})}
	report := func(m ReadyMessage) {
		if ready != nil {
			_ = json.NewEncoder(ready).Encode(m)
			_ = ready.Close()
			ready = nil
		}
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		report(ReadyMessage{Error: "shim: set child subreaper: " + err.Error(), ExitCode: 125})
		return err
	}
	s.reaper = newReaper()
	_ = os.Remove(cfg.Socket)
	l, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		report(ReadyMessage{Error: "shim: listen: " + err.Error(), ExitCode: 125})
		return err
	}
	if err := s.create(); err != nil {
		l.Close()
		_ = os.Remove(cfg.Socket)
		report(ReadyMessage{Error: err.Error(), ExitCode: StartErrorCode(err.Error())})
		return err
	}
	report(ReadyMessage{Pid: s.state.Pid})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /state", s.handleState)
	mux.HandleFunc("POST /start", s.handleStart)
	mux.HandleFunc("POST /kill", s.handleKill)
	mux.HandleFunc("GET /wait", s.handleWait)
	mux.HandleFunc("POST /attach", s.handleAttach)
	mux.HandleFunc("POST /exec", s.handleExec)
	mux.HandleFunc("POST /resize", s.handleResize)
	mux.HandleFunc("GET /logs", s.handleLogs)
	mux.HandleFunc("POST /delete", s.handleDelete)
	s.srv = &http.Server{Handler: mux}
	go func() {
		select {
		case <-ctx.Done():
		case <-s.quit:
		}
		_ = s.srv.Close()
	}()
	err = s.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

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

// copyOutput copies one output stream of the container into the log and to subscribers.
func (s *Shim) copyOutput(r *os.File, stream string, t byte) {
	s.ioDone.Add(1)
	go func() {
		defer s.ioDone.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				p := append([]byte(nil), buf[:n]...)
				s.ioMu.Lock()
				if werr := s.logf.write(stream, p); werr != nil {
					s.log.Warn("write container log", "err", werr)
				}
				for sub := range s.subs {
					select {
					case sub.ch <- frame{t, p}:
					case <-sub.done:
					}
				}
				s.ioMu.Unlock()
			}
			if err != nil {
				if !s.cfg.Tty {
					r.Close()
				}
				return
			}
		}
	}()
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, errdefs.HTTPStatus(err), api.Error{Code: errdefs.Code(err), Message: err.Error()})
}

func (s *Shim) handleState(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.getState())
}

func (s *Shim) handleStart(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.state.Status != api.StateCreated {
		st := s.state.Status
		s.mu.Unlock()
		writeError(w, fmt.Errorf("start container %s: it is %s, not created: %w", api.ShortID(s.cfg.ID), st, errdefs.ErrConflict))
		return
	}
	s.state.Status = api.StateRunning
	s.state.StartedAt = time.Now().UTC()
	s.mu.Unlock()
	if err := s.runtime(nil, nil, "start", s.cfg.ID); err != nil {
		s.mu.Lock()
		s.state.Error = err.Error()
		s.mu.Unlock()
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.getState())
}

func (s *Shim) handleKill(w http.ResponseWriter, r *http.Request) {
	sig, err := strconv.Atoi(r.URL.Query().Get("signal"))
	if err != nil || sig <= 0 || sig > 64 {
		writeError(w, fmt.Errorf("kill: signal %q is not a signal number: %w", r.URL.Query().Get("signal"), errdefs.ErrInvalidArgument))
		return
	}
	st := s.getState()
	if st.Status == api.StateExited {
		writeError(w, fmt.Errorf("kill container %s: it is not running: %w", api.ShortID(s.cfg.ID), errdefs.ErrConflict))
		return
	}
	select {
	case <-s.exited:
		writeError(w, fmt.Errorf("kill container %s: it is not running: %w", api.ShortID(s.cfg.ID), errdefs.ErrConflict))
		return
	default:
	}
	// The pid cannot have been reused: the shim has not reaped it (exited is still open).
	if err := unix.Kill(st.Pid, unix.Signal(sig)); err != nil && err != unix.ESRCH {
		writeError(w, fmt.Errorf("kill container %s: %w", api.ShortID(s.cfg.ID), err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Shim) handleWait(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.exited:
		writeJSON(w, http.StatusOK, s.getState())
	case <-r.Context().Done():
	}
}

func (s *Shim) handleResize(w http.ResponseWriter, r *http.Request) {
	var ws api.Winsize
	if err := json.NewDecoder(r.Body).Decode(&ws); err != nil {
		writeError(w, fmt.Errorf("resize: %v: %w", err, errdefs.ErrInvalidArgument))
		return
	}
	if s.console == nil {
		writeError(w, fmt.Errorf("resize: container %s has no terminal: %w", api.ShortID(s.cfg.ID), errdefs.ErrConflict))
		return
	}
	if err := setWinsize(s.console, ws); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// hijack answers 101 and takes over the connection of an upgrade request.
func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ov-stream\r\n\r\n")
	if err := rw.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, rw, nil
}

func (s *Shim) subscribe() *subscriber {
	sub := &subscriber{ch: make(chan frame, 64), done: make(chan struct{})}
	s.subs[sub] = struct{}{}
	return sub
}

func (s *Shim) unsubscribe(sub *subscriber) {
	s.ioMu.Lock()
	delete(s.subs, sub)
	s.ioMu.Unlock()
}

// pump writes sub's frames to fw until the container exits (then drains what is queued) or the
// client goes away.
func (s *Shim) pump(sub *subscriber, fw *api.FrameWriter) error {
	for {
		select {
		case f := <-sub.ch:
			if err := fw.Write(f.t, f.p); err != nil {
				return err
			}
		case <-s.exited:
			for {
				select {
				case f := <-sub.ch:
					if err := fw.Write(f.t, f.p); err != nil {
						return err
					}
				default:
					return nil
				}
			}
		}
	}
}

// handleAttach streams the container's live output and, when it was created with Stdin, feeds the
// client's stdin frames to it. The last frame is the exit.
func (s *Shim) handleAttach(w http.ResponseWriter, r *http.Request) {
	s.ioMu.Lock()
	sub := s.subscribe()
	s.ioMu.Unlock()
	defer func() { close(sub.done); s.unsubscribe(sub) }()
	conn, rw, err := hijack(w)
	if err != nil {
		return
	}
	defer conn.Close()
	fw := api.NewFrameWriter(conn)
	go s.readInput(rw.Reader, s.stdin, s.console, !s.cfg.Tty)
	if err := s.pump(sub, fw); err != nil {
		return
	}
	st := s.getState()
	_ = fw.WriteJSON(api.FrameExit, api.Exit{ExitCode: st.ExitCode, Error: st.Error})
}

// readInput feeds stdin frames from r to stdin and resize frames to console until r ends.
func (s *Shim) readInput(r io.Reader, stdin, console *os.File, closable bool) {
	for {
		t, p, err := api.ReadFrame(r)
		if err != nil {
			return
		}
		switch t {
		case api.FrameStdin:
			if stdin != nil {
				_, _ = stdin.Write(p)
			}
		case api.FrameCloseStdin:
			if stdin != nil && closable {
				_ = stdin.Close()
			} else if stdin != nil && console != nil {
				_, _ = stdin.Write([]byte{4}) // ^D: end of input on a terminal
			}
		case api.FrameResize:
			var ws api.Winsize
			if console != nil && json.Unmarshal(p, &ws) == nil {
				_ = setWinsize(console, ws)
			}
		}
	}
}

// ExecRequest is the body of the shim's POST /exec: the OCI process to run in the container.
type ExecRequest struct {
	Process specs.Process `json:"process"`
	Stdin   bool          `json:"stdin,omitempty"`
}

// handleExec runs a process in the container and streams its stdio; the last frame is its exit.
func (s *Shim) handleExec(w http.ResponseWriter, r *http.Request) {
	var req ExecRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, fmt.Errorf("exec: bad request: %v: %w", err, errdefs.ErrInvalidArgument))
		return
	}
	select {
	case <-s.exited:
		writeError(w, fmt.Errorf("exec in container %s: it is not running: %w", api.ShortID(s.cfg.ID), errdefs.ErrConflict))
		return
	default:
	}
	if s.getState().Status != api.StateRunning {
		writeError(w, fmt.Errorf("exec in container %s: it is not running: %w", api.ShortID(s.cfg.ID), errdefs.ErrConflict))
		return
	}
	conn, rw, err := hijack(w)
	if err != nil {
		return
	}
	defer conn.Close()
	fw := api.NewFrameWriter(conn)
	code, err := s.exec(req, rw.Reader, fw)
	e := api.Exit{ExitCode: code}
	if err != nil {
		e.Error = err.Error()
	}
	_ = fw.WriteJSON(api.FrameExit, e)
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

// handleLogs streams the log: what the file holds (the last tail entries), then, with follow, live
// output until the container exits.
func (s *Shim) handleLogs(w http.ResponseWriter, r *http.Request) {
	tail, err := api.ParseTail(r.URL.Query().Get("tail"))
	if err != nil {
		writeError(w, err)
		return
	}
	follow := r.URL.Query().Get("follow") == "1"
	var entries []LogEntry
	s.ioMu.Lock()
	_, err = ReadLog(s.cfg.LogPath, tail, func(e LogEntry) error { entries = append(entries, e); return nil })
	var sub *subscriber
	if err == nil && follow {
		sub = s.subscribe()
	}
	s.ioMu.Unlock()
	if sub != nil {
		defer func() { close(sub.done); s.unsubscribe(sub) }()
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.ov.stream")
	w.WriteHeader(http.StatusOK)
	fw := api.NewFrameWriter(api.FlushWriter(w))
	for _, e := range entries {
		t := api.FrameStdout
		if e.Stream == "stderr" {
			t = api.FrameStderr
		}
		if err := fw.Write(t, []byte(e.Log)); err != nil {
			return
		}
	}
	if sub != nil {
		_ = s.pump(sub, fw)
	}
}

// handleDelete removes the container from the runtime (killing it first with force=1) and ends the
// shim.
func (s *Shim) handleDelete(w http.ResponseWriter, r *http.Request) {
	force := r.URL.Query().Get("force") == "1"
	select {
	case <-s.exited:
	default:
		if !force && s.getState().Status == api.StateRunning {
			writeError(w, fmt.Errorf("delete container %s: it is running; stop it first or force: %w", api.ShortID(s.cfg.ID), errdefs.ErrConflict))
			return
		}
		_ = unix.Kill(s.getState().Pid, unix.SIGKILL)
		<-s.exited
	}
	if err := s.runtime(nil, nil, "delete", "--force", s.cfg.ID); err != nil {
		s.log.Warn("runtime delete", "err", err)
	}
	s.ioMu.Lock()
	_ = s.logf.close()
	s.ioMu.Unlock()
	if s.console != nil {
		s.console.Close()
	}
	_ = os.Remove(s.cfg.Socket)
	writeJSON(w, http.StatusOK, s.getState())
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.quitOnce.Do(func() { close(s.quit) })
}
