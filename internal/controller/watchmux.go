package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/errdefs"
)

// The host watch stream, GET /v1/endpoints?watch=true&networks=NAME:REV,...: one stream carrying
// the endpoint events of every network a host serves, each event naming its network. Per network it
// behaves as the network's own stream (GET /v1/networks/{name}/endpoints?watch=true&revision=REV):
// a snapshot or the missed events, a progress event once caught up, heartbeats. It exists for
// memory: each open stream costs the controller about 97 KB (an HTTP connection and its goroutines,
// BenchmarkWatchStreamMemory), so 1,000 hosts serving 19 networks each held 19,000 streams (1.8 GB);
// with one stream per host they hold 1,000. The stream is one queue (sub) that the hub keeps on the
// feed of each of its networks: the frames are the hub's, encoded once, whatever the number of
// streams and networks.

// maxHostWatchNetworks caps the networks of one host watch stream.
const maxHostWatchNetworks = 1024

// unknownNetworkHeader names, in a 404 answer to a host watch, the network that does not exist: the
// client drops it without parsing the message.
const unknownNetworkHeader = "Ov-Unknown-Network"

// parseHostWatch reads the networks parameter: NAME or NAME:REV, comma-separated, each name once.
func parseHostWatch(s string) ([]string, map[string]int64, error) {
	const usage = "write networks=NAME:REV,NAME:REV,... (REV the last revision applied in full, 0 or none for a snapshot)"
	if s == "" {
		return nil, nil, fmt.Errorf("host watch: no networks given; %s: %w", usage, errdefs.ErrInvalidArgument)
	}
	items := strings.Split(s, ",")
	if len(items) > maxHostWatchNetworks {
		return nil, nil, fmt.Errorf("host watch: %d networks, more than the %d one stream may carry; open several streams: %w", len(items), maxHostWatchNetworks, errdefs.ErrInvalidArgument)
	}
	names := make([]string, 0, len(items))
	revs := make(map[string]int64, len(items))
	for _, it := range items {
		name, rs, _ := strings.Cut(it, ":")
		if name == "" {
			return nil, nil, fmt.Errorf("host watch: %q names no network; %s: %w", it, usage, errdefs.ErrInvalidArgument)
		}
		var rev int64
		if rs != "" {
			v, err := strconv.ParseInt(rs, 10, 64)
			if err != nil || v < 0 {
				return nil, nil, fmt.Errorf("host watch: network %q: revision %q is not a non-negative integer: %w", name, rs, errdefs.ErrInvalidArgument)
			}
			rev = v
		}
		if _, dup := revs[name]; dup {
			return nil, nil, fmt.Errorf("host watch: network %q is named twice; name each network once: %w", name, errdefs.ErrInvalidArgument)
		}
		names = append(names, name)
		revs[name] = rev
	}
	return names, revs, nil
}

// watchHost serves GET /v1/endpoints?watch=true&networks=...: it checks the request (400 for a bad
// list, 404 naming an unknown network), counts it as one stream of the token and streams.
func (c *Controller) watchHost(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(false, ""); err != nil {
		return err
	}
	q := r.URL.Query()
	if watch, _ := strconv.ParseBool(q.Get("watch")); !watch {
		return fmt.Errorf("GET /v1/endpoints is the host watch stream: add watch=true&networks=NAME:REV,...; a network's endpoints are listed by GET /v1/networks/{name}/endpoints: %w", errdefs.ErrInvalidArgument)
	}
	names, revs, err := parseHostWatch(q.Get("networks"))
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := c.checkNetwork(r.Context(), name); err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				w.Header().Set(unknownNetworkHeader, name)
				return fmt.Errorf("host watch: network %q does not exist (removed?); watch without it: %w", name, errdefs.ErrNotFound)
			}
			return err
		}
	}
	release, err := c.watches.acquire(p, c.cfg.MaxWatchesPerToken)
	if err != nil {
		return err
	}
	defer release()
	ws := c.metrics.hostWatchOpened(p, revs)
	defer ws.closed()
	return c.streamHost(w, r, names, revs, ws)
}

// checkNetwork tells whether network exists (ErrNotFound when it does not): from the cache when it
// holds it (a host stream names many networks, and thousands of hosts reconnect at once after a
// controller restart), else from the store (the cache may not have seen a network just created).
func (c *Controller) checkNetwork(ctx context.Context, network string) error {
	if c.cache.hasSynced(store.KindNetwork) {
		if _, ok := c.cache.network(network); ok {
			return nil
		}
	}
	_, err := c.st.GetNetwork(ctx, network)
	return err
}

// hostNet is what a host stream keeps of one of its networks.
type hostNet struct {
	name  string
	last  int64 // the last revision sent in full
	k     catchUp
	first []*frame
	leave func() // takes the stream off the network
}

// hostSource is where a host stream's events come from: one queue s for every network.
type hostSource struct {
	s    *sub
	nets map[string]*hostNet
	done chan error // a watch of the stream's own ended (only when the hub does not run)
}

// openHost puts one queue on the hub's feed of every network, or, when the hub does not run (tests
// without it), opens a watch of the stream's own per network into that queue.
func (c *Controller) openHost(ctx context.Context, names []string, revs map[string]int64) (*hostSource, error) {
	src := &hostSource{s: newSub(), nets: make(map[string]*hostNet, len(names)), done: make(chan error, len(names))}
	hubOK := false
	if c.hub != nil && useHub {
		ok, err := c.hub.wait(ctx)
		if err != nil {
			return nil, err
		}
		hubOK = ok
	}
	for _, name := range names {
		n := &hostNet{name: name}
		from, target := revs[name], int64(0)
		if hubOK {
			n.first, target, from, n.leave = c.hub.join(src.s, name, from)
		} else {
			target = c.cache.endpointRevision(name)
			n.leave = c.ownWatch(ctx, src, name, from)
		}
		n.last, n.k = from, catchUp{target: target, fromRev: from}
		src.nets[name] = n
	}
	return src, nil
}

// ownWatch watches network from fromRev into src's queue, each event naming the network.
func (c *Controller) ownWatch(ctx context.Context, src *hostSource, network string, fromRev int64) func() {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		err := c.st.WatchEndpoints(ctx, network, fromRev, func(ev api.EndpointEvent) error {
			ev.Network = network
			if !src.s.push(newFrame(ev)) {
				return errStreamBehind
			}
			return nil
		})
		if ctx.Err() == nil { // not taken off the network, nor the stream ended
			src.done <- err
		}
	}()
	return cancel
}

// close takes the stream off every network it still has.
func (src *hostSource) close() {
	for _, n := range src.nets {
		n.leave()
	}
}

// hostWriter writes a host stream's events and keeps each network's revision and catch-up.
type hostWriter struct {
	w   http.ResponseWriter
	src *hostSource
	ws  *watchStream
}

// put writes one line; false when the client went away.
func (hw hostWriter) put(f *frame) bool {
	if _, err := hw.w.Write(f.bytes()); err != nil {
		return false
	}
	hw.ws.wrote(f.ev)
	return true
}

// write writes f, an event of one of the stream's networks, and the progress event that tells the
// client the network caught up, once it has.
func (hw hostWriter) write(f *frame) bool {
	n := hw.src.nets[f.ev.Network]
	if n == nil {
		return true // a network that left the stream (removed)
	}
	if !hw.put(f) {
		return false
	}
	if f.ev.Type == api.EventSnapshot || f.ev.Type == api.EventProgress || f.ev.Last {
		n.last = f.ev.Revision // a snapshot after a restore goes back
	}
	if p, ok := n.k.after(f.ev, n.last); ok {
		p.Network = n.name
		return hw.put(newFrame(p))
	}
	return true
}

// heartbeat writes a progress event per network, and ends the part of each network that was removed
// with a removed event; false when the client went away.
func (hw hostWriter) heartbeat(ctx context.Context, c *Controller, names []string) bool {
	for _, name := range names {
		n := hw.src.nets[name]
		if n == nil {
			continue
		}
		if err := c.checkNetwork(ctx, name); errors.Is(err, errdefs.ErrNotFound) {
			n.leave()
			delete(hw.src.nets, name)
			hw.ws.left(name)
			if !hw.put(newFrame(api.EndpointEvent{Type: api.EventRemoved, Network: name, Revision: n.last})) {
				return false
			}
			continue
		}
		if !hw.put(newFrame(api.EndpointEvent{Type: api.EventProgress, Network: name, Revision: n.last})) {
			return false
		}
	}
	return true
}

// streamHost streams the events of names as newline-delimited JSON until the client goes away, every
// network is removed, the stream falls behind, or the controller shuts down.
func (c *Controller) streamHost(w http.ResponseWriter, r *http.Request, names []string, revs map[string]int64, ws *watchStream) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	src, err := c.openHost(ctx, names, revs)
	if err != nil {
		return err
	}
	defer src.close()
	rc, flusher := startStream(w)
	hw := hostWriter{w: w, src: src, ws: ws}
	for _, name := range names { // each network's catch-up first, in the order asked
		n := src.nets[name]
		if p, ok := n.k.atOpen(); ok {
			p.Network = name
			if !hw.put(newFrame(p)) {
				return nil
			}
		}
		for _, f := range n.first {
			if !hw.write(f) {
				return nil
			}
		}
		n.first = nil
	}
	if flusher != nil {
		flusher.Flush()
	}
	tick := time.NewTicker(c.cfg.WatchHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-src.s.wake:
			_ = rc.SetWriteDeadline(time.Now().Add(c.cfg.WatchHeartbeat + 30*time.Second))
			for _, f := range src.s.take() { // everything queued, then one flush
				if !hw.write(f) {
					return nil
				}
			}
		case <-tick.C:
			_ = rc.SetWriteDeadline(time.Now().Add(c.cfg.WatchHeartbeat + 30*time.Second))
			if !hw.heartbeat(ctx, c, names) {
				return nil
			}
		case <-c.stopWatches:
			return nil
		case <-ctx.Done():
			return nil // the client went away
		case <-src.s.cut:
			c.log.Info("host endpoint watch stream fell behind; closing it (the client resumes from its revisions)", "networks", len(names))
			return nil
		case err := <-src.done:
			if err != nil && !errors.Is(err, context.Canceled) {
				c.log.Warn("host endpoint watch ended", "err", err)
			}
			return nil
		}
		if flusher != nil {
			flusher.Flush()
		}
		if len(src.nets) == 0 {
			return nil // every network was removed
		}
	}
}
