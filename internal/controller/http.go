package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/errdefs"
)

// Handler returns the HTTP handler of the API (docs/api.md).
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", c.health)
	route := func(pattern string, h func(w http.ResponseWriter, r *http.Request, p principal) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			p, err := c.authenticate(r.Context(), r)
			if err == nil {
				err = h(w, r, p)
			}
			if err != nil {
				c.writeError(w, r, err, p.role != roleNone)
			}
		})
	}
	route("GET /v1/networks", c.listNetworks)
	route("POST /v1/networks", c.createNetwork)
	route("GET /v1/networks/{name}", c.getNetwork)
	route("PUT /v1/networks/{name}", c.updateNetwork)
	route("DELETE /v1/networks/{name}", c.deleteNetwork)
	route("GET /v1/networks/{name}/endpoints", c.listEndpoints)
	route("POST /v1/networks/{name}/endpoints", c.allocate)
	route("DELETE /v1/networks/{name}/endpoints/{host}/{container}", c.release)
	route("PUT /v1/networks/{name}/endpoints/{host}/{container}/names", c.setEndpointNames)
	route("GET /v1/hosts", c.listHosts)
	route("POST /v1/hosts", c.registerHost)
	route("GET /v1/hosts/{name}", c.getHost)
	route("DELETE /v1/hosts/{name}", c.removeHost)
	route("POST /v1/hosts/{name}/heartbeat", c.heartbeat)
	route("PUT /v1/hosts/{name}/dataplane", c.putDataplane)
	route("GET /v1/hosts/{name}/endpoints", c.hostEndpoints)
	route("POST /v1/hosts/{name}/reconcile", c.reconcile)
	route("POST /v1/hosts/{name}/reset-token", c.resetHostToken)
	route("POST /v1/hosts/{name}/rotate-key", c.rotateHostKey)
	route("GET /v1/join-token", c.getJoinToken)
	route("POST /v1/join-token/rotate", c.rotateJoinToken)
	route("GET /v1/endpoints", c.watchHost)
	route("GET /v1/gossip/keyring", c.getGossipKeyring)
	route("POST /v1/gossip/keyring/rotate", c.rotateGossipKeyring)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.writeError(w, r, fmt.Errorf("%s %s: no such API path; see docs/api.md: %w", r.Method, r.URL.Path, errdefs.ErrNotFound), false)
	})
	return c.metrics.instrument(mux)
}

// Limits of the API server (HTTPServer) and of its requests.
const (
	maxBody        = 4 << 20 // request bodies (a reconcile of thousands of endpoints fits)
	maxHeaderBytes = 64 << 10
)

// HTTPServer returns an http.Server for the API with the limits an exposed service needs: slow or
// idle clients cannot hold connections for ever (header, read, write and idle timeouts; watch streams
// lift the read and write deadlines for themselves), headers and bodies are bounded, and a graceful
// shutdown ends the watch streams. The caller sets Addr or calls Serve.
func (c *Controller) HTTPServer() *http.Server {
	srv := &http.Server{
		Handler:           c.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
	srv.RegisterOnShutdown(c.CloseWatches)
	return srv
}

// tooManyWatches is the error of a watch over the per-token cap: HTTP 429, class ErrExhausted.
type tooManyWatches struct{ error }

func (e tooManyWatches) Unwrap() error { return e.error }

// writeError answers err. A client that did not authenticate gets no detail of a 5xx failure (it may
// name etcd's endpoints): the log has it.
func (c *Controller) writeError(w http.ResponseWriter, r *http.Request, err error, authenticated bool) {
	status := errdefs.HTTPStatus(err)
	if errors.As(err, new(tooManyWatches)) {
		status = http.StatusTooManyRequests
	}
	msg := err.Error()
	if status >= 500 {
		c.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		if !authenticated {
			msg = fmt.Sprintf("%s %s: the controller cannot answer right now (its store is unavailable); retry later; the controller's log has the details", r.Method, r.URL.Path)
		}
	} else {
		c.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSON(w, status, api.Error{Code: errdefs.Code(err), Message: msg})
}

// jsonBufs holds the buffers writeJSON encodes answers into.
var jsonBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeJSON answers v as JSON with status. The answer is encoded whole first, then written with its
// Content-Length in one write (no chunking, no encoder writing into the response piecemeal).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b := jsonBufs.Get().(*bytes.Buffer)
	defer putJSONBuf(b)
	err := json.NewEncoder(b).Encode(v)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	if err == nil {
		h["Content-Length"] = []string{strconv.Itoa(b.Len())}
	}
	w.WriteHeader(status)
	if err == nil {
		_, _ = w.Write(b.Bytes())
	}
}

// putJSONBuf gives b back to jsonBufs, unless it grew large (one huge body must not stay pinned).
func putJSONBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		b.Reset()
		jsonBufs.Put(b)
	}
}

// decode reads the whole request body (at most maxBody bytes) into a pooled buffer and decodes it
// into v: one JSON value, nothing but white space after it.
func decode(r *http.Request, v any) error {
	b := jsonBufs.Get().(*bytes.Buffer)
	defer putJSONBuf(b)
	if _, err := b.ReadFrom(r.Body); err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return fmt.Errorf("%s %s: request body is larger than %d bytes: %w", r.Method, r.URL.Path, maxBody, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("%s %s: reading the request body: %v: %w", r.Method, r.URL.Path, err, errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(b.Bytes(), v); err != nil {
		return fmt.Errorf("%s %s: request body is not valid JSON: %v: %w", r.Method, r.URL.Path, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (c *Controller) health(w http.ResponseWriter, r *http.Request) {
	if err := c.st.Health(r.Context()); err != nil {
		// No token is needed; with one (admin or host) the answer says what failed.
		_, aerr := c.authenticate(r.Context(), r)
		c.writeError(w, r, err, aerr == nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// --- networks

func (c *Controller) listNetworks(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(false, ""); err != nil {
		return err
	}
	ns, err := c.st.ListNetworks(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.Network, len(ns))
	for i, n := range ns {
		out[i] = n.Network
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (c *Controller) createNetwork(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(true, ""); err != nil {
		return err
	}
	var n api.Network
	if err := decode(r, &n); err != nil {
		return err
	}
	if n.Driver == "" {
		n.Driver = api.DriverOverlay
	}
	if err := n.Validate(); err != nil {
		return err
	}
	if n.Driver != api.DriverOverlay {
		return fmt.Errorf("network %q: the controller keeps overlay networks only; a %s network is local to one host: create it on that host's agent: %w", n.Name, n.Driver, errdefs.ErrInvalidArgument)
	}
	out, err := c.st.CreateNetwork(r.Context(), n, c.cfg.Pools)
	if err != nil {
		return err
	}
	c.log.Info("network created", "network", out.Name, "subnet", out.Subnet, "vni", out.VNI)
	writeJSON(w, http.StatusCreated, out.Network)
	return nil
}

func (c *Controller) getNetwork(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(false, ""); err != nil {
		return err
	}
	n, err := c.st.GetNetwork(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, n.Network)
	return nil
}

func (c *Controller) updateNetwork(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(true, ""); err != nil {
		return err
	}
	var n api.Network
	if err := decode(r, &n); err != nil {
		return err
	}
	if n.Name == "" {
		n.Name = r.PathValue("name")
	}
	if n.Name != r.PathValue("name") {
		return fmt.Errorf("network %q: the body names network %q; a network cannot be renamed: %w", r.PathValue("name"), n.Name, errdefs.ErrInvalidArgument)
	}
	if n.MTU != 0 && (n.MTU < 576 || n.MTU > 65535) {
		return fmt.Errorf("network %q: MTU %d is out of range; use 576-65535 or 0 to derive it: %w", n.Name, n.MTU, errdefs.ErrInvalidArgument)
	}
	out, err := c.st.UpdateNetwork(r.Context(), n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out.Network)
	return nil
}

func (c *Controller) deleteNetwork(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(true, ""); err != nil {
		return err
	}
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	if err := c.st.DeleteNetwork(r.Context(), r.PathValue("name"), force); err != nil {
		return err
	}
	c.log.Info("network removed", "network", r.PathValue("name"), "force", force)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- endpoints

func (c *Controller) listEndpoints(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(false, ""); err != nil {
		return err
	}
	name := r.PathValue("name")
	q := r.URL.Query()
	if watch, _ := strconv.ParseBool(q.Get("watch")); watch {
		var rev int64
		if s := q.Get("revision"); s != "" {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil || v < 0 {
				return fmt.Errorf("watch network %q: revision %q is not a non-negative integer: %w", name, s, errdefs.ErrInvalidArgument)
			}
			rev = v
		}
		release, err := c.watches.acquire(p, c.cfg.MaxWatchesPerToken)
		if err != nil {
			return err
		}
		defer release()
		ws := c.metrics.watchOpened(p, name, rev)
		defer ws.closed()
		return c.watch(w, r, name, rev, ws)
	}
	eps, rev, err := c.st.ListEndpoints(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.EndpointList{Endpoints: eps, Revision: rev})
	return nil
}

// startStream answers 200 with a newline-delimited JSON stream. A stream outlives the server's read
// and write timeouts: they are lifted, and the caller bounds each write through rc instead.
func startStream(w http.ResponseWriter) (rc *http.ResponseController, flusher http.Flusher) {
	rc = http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ = w.(http.Flusher)
	return rc, flusher
}

// watch streams endpoint events as newline-delimited JSON until the client goes away, the network
// is removed, or the controller shuts down. The events come from the controller's shared watch (hub),
// or from a watch of the stream's own when the hub cannot serve the revision asked for.
func (c *Controller) watch(w http.ResponseWriter, r *http.Request, network string, fromRev int64, ws *watchStream) error {
	if _, err := c.st.GetNetwork(r.Context(), network); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	src, err := c.openSource(ctx, network, fromRev)
	if err != nil {
		return err
	}
	defer src.close()
	rc, flusher := startStream(w)
	last := fromRev // the last revision sent in full: heartbeats must not claim a revision half sent
	k := catchUp{target: src.target, fromRev: fromRev}
	write := func(f *frame) bool {
		if _, err := w.Write(f.bytes()); err != nil {
			return false // the client went away, or reads nothing
		}
		ws.wrote(f.ev)
		if f.ev.Type == api.EventSnapshot || f.ev.Type == api.EventProgress || f.ev.Last {
			last = f.ev.Revision // a snapshot after a restore goes back
		}
		if p, ok := k.after(f.ev, last); ok {
			_, _ = w.Write(newFrame(p).bytes())
			ws.wrote(p)
		}
		return true
	}
	if p, ok := k.atOpen(); ok {
		_, _ = w.Write(newFrame(p).bytes())
		ws.wrote(p)
	}
	for _, f := range src.first {
		if !write(f) {
			return nil
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	tick := time.NewTicker(c.cfg.WatchHeartbeat)
	defer tick.Stop()
	for {
		var frames []*frame
		select {
		case <-src.s.wake:
			frames = src.s.take()
		case <-tick.C:
			if !c.networkExists(ctx, network) {
				return nil // the network is gone: the client's reconnect gets 404
			}
			frames = []*frame{newFrame(api.EndpointEvent{Type: api.EventProgress, Revision: last})}
		case <-c.stopWatches:
			return nil
		case <-src.s.cut:
			c.log.Info("endpoint watch stream fell behind; closing it (the client resumes from its revision)", "network", network)
			return nil
		case err := <-src.done:
			if err != nil && !errors.Is(err, context.Canceled) {
				c.log.Warn("endpoint watch ended", "network", network, "err", err)
			}
			return nil
		}
		_ = rc.SetWriteDeadline(time.Now().Add(c.cfg.WatchHeartbeat + 30*time.Second))
		for _, f := range frames { // everything queued, then one flush
			if !write(f) {
				return nil
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// errStreamBehind ends a stream's own watch when the stream fell hubQueue frames behind.
var errStreamBehind = errors.New("the stream fell behind")

// useHub is false only in tests that show what the shared watch does.
var useHub = true

// watchSource is where a stream's events come from: frames to write first, then what s queues, until
// s is cut (the stream fell behind) or done (a watch of the stream's own ended).
type watchSource struct {
	first  []*frame
	s      *sub
	done   <-chan error
	target int64 // the network's latest endpoint revision when the stream opened
	close  func()
}

// openSource subscribes to the hub, or opens a watch of the stream's own when the hub cannot serve
// fromRev.
func (c *Controller) openSource(ctx context.Context, network string, fromRev int64) (watchSource, error) {
	if c.hub != nil && useHub {
		sub, ok, err := c.hub.subscribe(ctx, network, fromRev)
		if err != nil {
			return watchSource{}, err
		}
		if ok {
			return watchSource{first: sub.first, s: sub.s, target: sub.target, close: sub.cancel}, nil
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	s := newSub()
	done := make(chan error, 1)
	go func() {
		done <- c.st.WatchEndpoints(ctx, network, fromRev, func(ev api.EndpointEvent) error {
			if !s.push(newFrame(ev)) {
				return errStreamBehind
			}
			return nil
		})
	}()
	return watchSource{s: s, done: done, target: c.cache.endpointRevision(network), close: cancel}, nil
}

// networkExists tells whether network still exists, from the cache when it has its first view of the
// networks (one etcd read per stream and heartbeat otherwise: at thousands of streams, thousands a
// minute).
func (c *Controller) networkExists(ctx context.Context, network string) bool {
	if c.cache.hasSynced(store.KindNetwork) {
		_, ok := c.cache.network(network)
		return ok
	}
	_, err := c.st.GetNetwork(ctx, network)
	return !errors.Is(err, errdefs.ErrNotFound)
}

// catchUp tells the client of a resumed watch when it holds every event up to the network's latest
// endpoint revision at connect time: a progress event right after the event that completes that
// revision, or as the stream's first event when it had them all already. The agent's name service waits for it (or a snapshot) before it calls a name it does
// not know NXDOMAIN after a restart.
type catchUp struct {
	target, fromRev int64
	done            bool
}

// atOpen returns the progress event that opens a resumed stream whose client has every event already.
func (k *catchUp) atOpen() (api.EndpointEvent, bool) {
	if k.fromRev == 0 || k.fromRev < k.target {
		return api.EndpointEvent{}, false
	}
	k.done = true
	return api.EndpointEvent{Type: api.EventProgress, Revision: k.fromRev}, true
}

// after returns the progress event to send after ev, with last the last revision sent in full; false
// when there is none.
func (k *catchUp) after(ev api.EndpointEvent, last int64) (api.EndpointEvent, bool) {
	if k.done || k.fromRev == 0 || ev.Type == api.EventProgress || last < k.target {
		return api.EndpointEvent{}, false
	}
	k.done = true
	return api.EndpointEvent{Type: api.EventProgress, Revision: last}, true
}

func (c *Controller) allocate(w http.ResponseWriter, r *http.Request, p principal) error {
	var ep api.Endpoint
	if err := decode(r, &ep); err != nil {
		return err
	}
	if ep.Network == "" {
		ep.Network = r.PathValue("name")
	}
	if ep.Network != r.PathValue("name") {
		return fmt.Errorf("allocate: the body names network %q, the path %q: %w", ep.Network, r.PathValue("name"), errdefs.ErrInvalidArgument)
	}
	if err := p.need(false, ep.Host); err != nil {
		return err
	}
	out, created, err := c.Allocate(r.Context(), ep)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, out)
	return nil
}

func (c *Controller) release(w http.ResponseWriter, r *http.Request, p principal) error {
	host := r.PathValue("host")
	if err := p.need(false, host); err != nil {
		return err
	}
	if _, err := c.st.Release(r.Context(), r.PathValue("name"), host, r.PathValue("container")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- hosts

func (c *Controller) listHosts(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(false, ""); err != nil {
		return err
	}
	if c.hostListForHost(w, p) {
		return nil
	}
	hs, err := c.st.ListHosts(r.Context())
	if err != nil {
		return err
	}
	alive, err := c.st.ListAlive(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.Host, len(hs))
	for i, h := range hs {
		seen, ok := alive[h.Name]
		out[i] = c.hostView(h, aliveView{alive: ok, seen: seen})
	}
	c.withDataplane(r.Context(), out)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (c *Controller) getHost(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(false, ""); err != nil {
		return err
	}
	h, err := c.st.GetHost(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	seen, ok, err := c.st.GetAlive(r.Context(), h.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c.hostView(h, aliveView{alive: ok, seen: seen}))
	return nil
}

// registerHost creates a host (join or admin token: the answer carries the host's own token) or
// updates it (its own token or admin: address, labels). A host whose token an admin reset (ovctl node
// reset-token) registers again with the join token: it keeps its record and its allocations and gets
// a new token. Labels from an agent (join or host token) are its configuration labels; labels from
// an admin (ovctl apply) are kept apart and win over them (store.Host.EffectiveLabels).
func (c *Controller) registerHost(w http.ResponseWriter, r *http.Request, p principal) error {
	var req api.Host
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if p.role == roleHost && p.host != req.Name {
		return p.need(false, req.Name)
	}
	ctx := r.Context()
	for attempt := 0; attempt < 16; attempt++ {
		if err := c.addressFree(ctx, req); err != nil {
			return err
		}
		cur, err := c.st.GetHost(ctx, req.Name)
		switch {
		case errors.Is(err, errdefs.ErrNotFound):
			out, token, err := c.createHost(ctx, req, p)
			if errors.Is(err, errdefs.ErrAlreadyExists) {
				continue
			}
			if err != nil {
				return err
			}
			view := c.hostView(out, aliveNow())
			view.Token = token
			writeJSON(w, http.StatusCreated, view)
			return nil
		case err != nil:
			return err
		}
		if p.role == roleJoin && !cur.Rejoin {
			return fmt.Errorf("host %q is already registered; its agent must use the host token it received then (kept in its data directory). If that token is lost or refused, run ovctl node reset-token %s: the agent then registers again with the join token and its containers keep their addresses: %w", req.Name, req.Name, errdefs.ErrAlreadyExists)
		}
		next, token := c.updatedHost(ctx, cur, req, p)
		if token == "" && p.role == roleJoin {
			return fmt.Errorf("register host %q again: %w", req.Name, errdefs.ErrUnavailable)
		}
		out, err := c.st.UpdateHost(ctx, next)
		if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if token != "" {
			c.log.Info("host registered again after its token was reset; its addresses are kept", "host", req.Name, "address", req.Address)
		}
		if cur.Address != req.Address {
			c.log.Info("host address changed", "host", req.Name, "from", cur.Address, "to", req.Address)
			if err := c.st.RetagHost(ctx, req.Name, req.Address); err != nil {
				return err
			}
		}
		lv := aliveNow()
		if p.role == roleAdmin {
			seen, ok, _ := c.st.GetAlive(ctx, req.Name)
			lv = aliveView{alive: ok, seen: seen}
		} else if err := c.markAlive(ctx, req.Name); err != nil {
			c.log.Warn("cannot record that a host is alive", "host", req.Name, "err", err)
		}
		view := c.hostView(out, lv)
		view.Token = token
		writeJSON(w, http.StatusOK, view)
		return nil
	}
	return fmt.Errorf("register host %q: it keeps changing; retry: %w", req.Name, errdefs.ErrConflict)
}

// createHost registers a new host (join or admin token) and returns it with its token.
func (c *Controller) createHost(ctx context.Context, req api.Host, p principal) (store.Host, string, error) {
	if p.role != roleAdmin && p.role != roleJoin {
		return store.Host{}, "", fmt.Errorf("host %q is not registered (it was removed?); register again with the join token: %w", req.Name, errdefs.ErrUnauthorized)
	}
	key, err := c.hostKey(ctx)
	if err != nil {
		return store.Host{}, "", err
	}
	token, hash := newHostToken(req.Name, key)
	h := store.Host{Host: api.Host{Name: req.Name, Address: req.Address, LastSeen: time.Now().UTC(), WireGuardKey: req.WireGuardKey}, TokenHash: hash}
	if p.role == roleAdmin {
		h.Labels = req.Labels
	} else {
		h.ConfigLabels = req.Labels
	}
	out, err := c.st.CreateHost(ctx, h)
	if err != nil {
		return store.Host{}, "", err
	}
	c.log.Info("host registered", "host", req.Name, "address", req.Address)
	c.forgetLease(req.Name) // a lease held for an earlier host of that name: its alive key is gone
	if err := c.markAlive(ctx, req.Name); err != nil {
		c.log.Warn("cannot record that a host is alive", "host", req.Name, "err", err)
	}
	return out, token, nil
}

// updatedHost is cur updated by a registration req from p, and the new host token when p re-joins a
// host whose token was reset (join token).
func (c *Controller) updatedHost(ctx context.Context, cur store.Host, req api.Host, p principal) (store.Host, string) {
	next := cur
	next.Address = req.Address
	if p.role != roleAdmin { // an admin changing labels says nothing of the host's liveness
		next.LastSeen = time.Now().UTC()
	}
	var token string
	if p.role == roleJoin { // cur.Rejoin: a new token, the permit used up
		key, err := c.hostKey(ctx)
		if err != nil {
			return next, ""
		}
		token, next.TokenHash = newHostToken(req.Name, key)
		next.Rejoin = false
	}
	if p.role == roleAdmin {
		// An admin sends the labels it wants the host to have (ovctl apply: the effective ones with
		// its changes); those that only repeat the agent's configuration stay the agent's.
		next.Labels = appliedLabels(req.Labels, cur.ConfigLabels)
		return next, token
	}
	if cur.ConfigLabels == nil && len(cur.Labels) > 0 {
		// A record from before labels were kept apart: its labels mixed both; those the agent
		// configures are the agent's.
		next.Labels = appliedLabels(cur.Labels, req.Labels)
	}
	next.ConfigLabels = req.Labels
	if req.WireGuardKey != cur.WireGuardKey && req.WireGuardKey != "" {
		next.WireGuardKey, next.RotateKey = req.WireGuardKey, false // a new key answers a rotation request
	}
	return next, token
}

// appliedLabels are the labels of want that config does not give with the same value.
func appliedLabels(want, config map[string]string) map[string]string {
	var out map[string]string
	for k, v := range want {
		if cv, ok := config[k]; ok && cv == v {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// addressFree checks that no other host is registered with h's address (ErrConflict naming it).
func (c *Controller) addressFree(ctx context.Context, h api.Host) error {
	hs, err := c.st.ListHosts(ctx)
	if err != nil {
		return err
	}
	for _, o := range hs {
		if o.Name != h.Name && o.Address == h.Address {
			return fmt.Errorf("host %q: address %s is already registered by host %q; give each host its own underlay address, or remove %q first with ovctl node rm %s: %w",
				h.Name, h.Address, o.Name, o.Name, o.Name, errdefs.ErrConflict)
		}
	}
	return nil
}

// heartbeat records that the host is alive (its lease, not its record: see liveness) and answers
// with the host and the gossip keyring's version.
func (c *Controller) heartbeat(w http.ResponseWriter, r *http.Request, p principal) error {
	name := r.PathValue("name")
	if err := p.need(false, name); err != nil {
		return err
	}
	h, ok := c.cache.host(name)
	if !ok {
		var err error
		if h, err = c.st.GetHost(r.Context(), name); err != nil {
			return err
		}
	}
	if err := c.markAlive(r.Context(), name); err != nil {
		return err
	}
	view := c.hostView(h, aliveNow())
	view.GossipKeyringVersion = c.gossipVersion()
	view.HostsRevision = c.cache.hostsRevision()
	writeJSON(w, http.StatusOK, view)
	return nil
}

// resetHostToken (admin) revokes the host's token and lets the host register again with the join
// token, once, keeping its record and its allocations (ovctl node reset-token).
func (c *Controller) resetHostToken(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(true, ""); err != nil {
		return err
	}
	name := r.PathValue("name")
	for attempt := 0; attempt < 16; attempt++ {
		cur, err := c.st.GetHost(r.Context(), name)
		if err != nil {
			return err
		}
		cur.TokenHash, cur.Rejoin = "", true
		out, err := c.st.UpdateHost(r.Context(), cur)
		if errors.Is(err, errdefs.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		c.log.Info("host token reset: the host may register again with the join token, keeping its addresses", "host", name)
		seen, ok, _ := c.st.GetAlive(r.Context(), name)
		writeJSON(w, http.StatusOK, c.hostView(out, aliveView{alive: ok, seen: seen}))
		return nil
	}
	return fmt.Errorf("reset the token of host %q: it keeps changing; retry: %w", name, errdefs.ErrConflict)
}

// rotateHostKey (admin) asks the host's agent for a new WireGuard key pair (ovctl node rotate-key):
// the agent sees the request in its next heartbeat's answer, publishes its new public key and the
// request is cleared. With ?revoke=true the published key is removed at once as well: the other hosts
// drop their tunnel to the host (its encrypted traffic stops, never sent in clear) until it publishes
// the new one.
func (c *Controller) rotateHostKey(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(true, ""); err != nil {
		return err
	}
	name, revoke := r.PathValue("name"), r.URL.Query().Get("revoke") == "true"
	for attempt := 0; attempt < 16; attempt++ {
		cur, err := c.st.GetHost(r.Context(), name)
		if err != nil {
			return err
		}
		cur.RotateKey = true
		if revoke {
			cur.WireGuardKey = ""
		}
		out, err := c.st.UpdateHost(r.Context(), cur)
		if errors.Is(err, errdefs.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		c.log.Info("WireGuard key rotation requested", "host", name, "revoked", revoke)
		seen, ok, _ := c.st.GetAlive(r.Context(), name)
		writeJSON(w, http.StatusOK, c.hostView(out, aliveView{alive: ok, seen: seen}))
		return nil
	}
	return fmt.Errorf("rotate the key of host %q: it keeps changing; retry: %w", name, errdefs.ErrConflict)
}

func (c *Controller) removeHost(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(true, ""); err != nil {
		return err
	}
	released, err := c.st.DeleteHost(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	c.forgetLease(r.PathValue("name"))
	c.log.Info("host removed", "host", r.PathValue("name"), "released", len(released))
	writeJSON(w, http.StatusOK, api.ReconcileResponse{Released: nonNil(released)})
	return nil
}

func (c *Controller) hostEndpoints(w http.ResponseWriter, r *http.Request, p principal) error {
	name := r.PathValue("name")
	if err := p.need(false, name); err != nil {
		return err
	}
	eps, err := c.st.HostEndpoints(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, nonNil(eps))
	return nil
}

func (c *Controller) reconcile(w http.ResponseWriter, r *http.Request, p principal) error {
	name := r.PathValue("name")
	if err := p.need(false, name); err != nil {
		return err
	}
	var req api.ReconcileRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	released, err := c.st.Reconcile(r.Context(), name, req.Endpoints)
	if err != nil {
		return err
	}
	if len(released) > 0 {
		c.log.Info("reconcile released addresses", "host", name, "released", len(released))
	}
	writeJSON(w, http.StatusOK, api.ReconcileResponse{Released: nonNil(released)})
	return nil
}

func nonNil(eps []api.Endpoint) []api.Endpoint {
	if eps == nil {
		return []api.Endpoint{}
	}
	return eps
}
