package shim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// routes returns the shim API: one handler per endpoint.
func (s *Shim) routes() http.Handler {
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
	mux.HandleFunc("POST /files/keep", s.handleKeepFiles)
	mux.HandleFunc("POST /files/take", s.handleTakeFiles)
	return mux
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
