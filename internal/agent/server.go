package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// Handler returns the agent's HTTP API (see docs/agent.md).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	v := "/" + api.AgentAPIVersion
	mux.HandleFunc("GET "+v+"/version", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.Version()) })
	a.containerRoutes(mux, v)
	a.imageRoutes(mux, v)
	a.registryRoutes(mux, v)
	a.networkRoutes(mux, v)
	a.volumeRoutes(mux, v)
	return mux
}

// containerRoutes adds the container API under v (/containers...).
func (a *Agent) containerRoutes(mux *http.ServeMux, v string) {
	mux.HandleFunc("POST "+v+"/containers", a.handleCreate)
	mux.HandleFunc("GET "+v+"/containers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.List(r.Context(), r.URL.Query().Get("all") == "1"))
	})
	mux.HandleFunc("GET "+v+"/containers/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, err := a.Inspect(r.Context(), r.PathValue("id"))
		reply(w, c, err)
	})
	mux.HandleFunc("POST "+v+"/containers/{id}/start", func(w http.ResponseWriter, r *http.Request) {
		c, err := a.Start(r.Context(), r.PathValue("id"))
		reply(w, c, err)
	})
	mux.HandleFunc("POST "+v+"/containers/{id}/stop", func(w http.ResponseWriter, r *http.Request) {
		t := time.Duration(-1) // none given: the container's --stop-timeout
		if s := r.URL.Query().Get("timeout"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				writeError(w, fmt.Errorf("stop: timeout %q is not a number of seconds: %w", s, errdefs.ErrInvalidArgument))
				return
			}
			t = time.Duration(n) * time.Second
		}
		c, err := a.Stop(r.Context(), r.PathValue("id"), t)
		reply(w, c, err)
	})
	mux.HandleFunc("POST "+v+"/containers/{id}/kill", func(w http.ResponseWriter, r *http.Request) {
		sig, err := ParseSignal(r.URL.Query().Get("signal"))
		if err == nil {
			err = a.Kill(r.Context(), r.PathValue("id"), sig)
		}
		replyEmpty(w, err)
	})
	mux.HandleFunc("POST "+v+"/containers/{id}/wait", func(w http.ResponseWriter, r *http.Request) {
		e, err := a.Wait(r.Context(), r.PathValue("id"), r.URL.Query().Get("condition") == "removed")
		reply(w, e, err)
	})
	mux.HandleFunc("DELETE "+v+"/containers/{id}", func(w http.ResponseWriter, r *http.Request) {
		replyEmpty(w, a.Remove(r.Context(), r.PathValue("id"), r.URL.Query().Get("force") == "1"))
	})
	mux.HandleFunc("POST "+v+"/containers/{id}/resize", func(w http.ResponseWriter, r *http.Request) {
		var ws api.Winsize
		if err := json.NewDecoder(r.Body).Decode(&ws); err != nil {
			writeError(w, fmt.Errorf("resize: %v: %w", err, errdefs.ErrInvalidArgument))
			return
		}
		replyEmpty(w, a.Resize(r.Context(), r.PathValue("id"), ws))
	})
	mux.HandleFunc("POST "+v+"/containers/{id}/attach", func(w http.ResponseWriter, r *http.Request) {
		conn, br, err := a.Attach(r.Context(), r.PathValue("id"))
		proxyStream(w, conn, br, err)
	})
	mux.HandleFunc("POST "+v+"/containers/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		var cfg api.ExecConfig
		if err := json.NewDecoder(r.Body).Decode(&cfg); err != nil {
			writeError(w, fmt.Errorf("exec: bad request body: %v: %w", err, errdefs.ErrInvalidArgument))
			return
		}
		conn, br, err := a.Exec(r.Context(), r.PathValue("id"), cfg)
		proxyStream(w, conn, br, err)
	})
	mux.HandleFunc("GET "+v+"/containers/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		tail, err := api.ParseTail(r.URL.Query().Get("tail"))
		if err != nil {
			writeError(w, err)
			return
		}
		if _, err := a.lookup(r.PathValue("id")); err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.ov.stream")
		w.WriteHeader(http.StatusOK)
		_ = a.Logs(r.Context(), r.PathValue("id"), r.URL.Query().Get("follow") == "1", tail, api.FlushWriter(w))
	})
}

// networkRoutes adds the network API under v (/networks...).
func (a *Agent) networkRoutes(mux *http.ServeMux, v string) {
	mux.HandleFunc("GET "+v+"/networks", func(w http.ResponseWriter, r *http.Request) {
		n, err := a.Networks(r.Context())
		reply(w, n, err)
	})
	mux.HandleFunc("POST "+v+"/networks", func(w http.ResponseWriter, r *http.Request) {
		var n api.Network
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			writeError(w, fmt.Errorf("network create: bad request body: %v: %w", err, errdefs.ErrInvalidArgument))
			return
		}
		out, err := a.CreateNetwork(r.Context(), n)
		if err == nil {
			writeJSON(w, http.StatusCreated, out)
			return
		}
		writeError(w, err)
	})
	mux.HandleFunc("GET "+v+"/networks/{name}", func(w http.ResponseWriter, r *http.Request) {
		n, err := a.Network(r.Context(), r.PathValue("name"))
		reply(w, n, err)
	})
	mux.HandleFunc("DELETE "+v+"/networks/{name}", func(w http.ResponseWriter, r *http.Request) {
		replyEmpty(w, a.DeleteNetwork(r.Context(), r.PathValue("name")))
	})
	for _, op := range []string{"connect", "disconnect"} {
		mux.HandleFunc("POST "+v+"/networks/{name}/"+op, func(w http.ResponseWriter, r *http.Request) {
			var req api.NetworkConnect
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				writeError(w, fmt.Errorf("network %s: bad request body: %v: %w", op, err, errdefs.ErrInvalidArgument))
				return
			}
			var c api.Container
			var err error
			if op == "connect" {
				c, err = a.Connect(r.Context(), r.PathValue("name"), req)
			} else {
				c, err = a.Disconnect(r.Context(), r.PathValue("name"), req)
			}
			reply(w, c, err)
		})
	}
}

func (a *Agent) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req api.ContainerCreate
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, fmt.Errorf("container create: bad request body: %v: %w", err, errdefs.ErrInvalidArgument))
		return
	}
	c, err := a.Create(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

// shutdownGrace is how long requests under way may run on once the agent is told to stop; then their
// contexts end (streams such as logs -f and wait last for ever otherwise, and held the exit 5 s).
const shutdownGrace = 200 * time.Millisecond

// Serve answers the API on the configured unix socket until ctx ends, then stops serving (containers
// keep running) and returns.
func (a *Agent) Serve(ctx context.Context) error {
	l, err := listenSocket(a.cfg.Socket, a.cfg.SocketMode, a.cfg.SocketGID)
	if err != nil {
		return err
	}
	// Requests get a context of their own that shutdown cancels (after a grace for short requests), as
	// if their clients had gone: streams (logs -f, wait) end at once instead of holding the exit.
	reqs, endRequests := context.WithCancel(context.Background())
	defer endRequests()
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return reqs }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	a.log.Info("serving", "socket", a.cfg.Socket, "runtime", a.cfg.Runtime)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	grace := time.AfterFunc(shutdownGrace, endRequests)
	defer grace.Stop()
	_ = srv.Shutdown(sctx)
	_ = os.Remove(a.cfg.Socket)
	a.log.Info("stopped serving; containers keep running")
	return nil
}

// ParseSignal parses a signal by name (KILL, SIGKILL) or number; empty is SIGKILL (like docker kill).
func ParseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return syscall.SIGKILL, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := s
	if len(name) > 3 && (name[:3] == "SIG" || name[:3] == "sig") {
		name = name[3:]
	}
	for n := 1; n < 32; n++ {
		sn := unixSignalName(syscall.Signal(n))
		if sn != "" && equalFold(sn, "SIG"+name) {
			return syscall.Signal(n), nil
		}
	}
	return 0, fmt.Errorf("signal %q: unknown; use a name such as TERM, KILL, HUP or a number: %w", s, errdefs.ErrInvalidArgument)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status := errdefs.HTTPStatus(err)
	code := errdefs.Code(err)
	var ce *CreateError
	if errors.As(err, &ce) {
		w.Header().Set("X-Ov-Exit-Code", strconv.Itoa(ce.ExitCode))
	}
	if errors.Is(err, context.Canceled) {
		status = 499
	}
	writeJSON(w, status, api.Error{Code: code, Message: err.Error()})
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func replyEmpty(w http.ResponseWriter, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// proxyStream answers an upgrade request by splicing the client's connection to a shim stream.
func proxyStream(w http.ResponseWriter, conn net.Conn, br *bufio.Reader, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	defer conn.Close()
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeError(w, errors.New("connection cannot be hijacked"))
		return
	}
	cconn, crw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer cconn.Close()
	_, _ = crw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ov-stream\r\n\r\n")
	if err := crw.Flush(); err != nil {
		return
	}
	go func() {
		// Client to shim: stdin and resize frames. Ends when the client closes; the shim's end of the
		// stream decides when the whole exchange is over.
		_, _ = io.Copy(conn, crw.Reader)
		if uc, ok := conn.(*net.UnixConn); ok {
			_ = uc.CloseWrite()
		}
	}()
	_, _ = io.Copy(cconn, br)
}
