package shim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
)

// Config tells a shim which container it serves. Every path is absolute.
type Config struct {
	ID          string // container ID, the runtime's container name
	Bundle      string // OCI bundle directory (config.json); the shim keeps its scratch files here
	Runtime     string // OCI runtime binary (ovrt or runc)
	RuntimeRoot string // the runtime's --root
	Socket      string // unix socket the shim serves its API on
	LogPath     string // json-lines log file of the container's output
	LogMaxSize  int64  // rotate LogPath when the next entry would take it past this size; 0: never
	LogMaxFile  int    // log files kept, LogPath included (LogPath.1 the newest rotated); below 2: LogPath alone
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

	kept keptFiles // for the agent, across its restarts (files_linux.go)

	srv      *http.Server
	quit     chan struct{}
	quitOnce sync.Once
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

	s.srv = &http.Server{Handler: s.routes()}
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
