package controller

import (
	"context"
	"encoding/json"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
)

// The endpoint watch hub: one etcd watch of every network's endpoints per controller, shared by all
// of its watch streams (Calico's Typha, inside the controller). Without it every stream opened its
// own etcd watch and encoded every event for itself: at 1,000 hosts a new endpoint on a network
// spanning them all cost etcd 1,000 watcher deliveries and the controller 1,000 JSON encodings
// (docs/scale.md). The hub decodes each etcd event once, encodes it once (a frame), and hands the
// same bytes to every stream of its network.
//
// A stream that opens with revision 0, or with a revision older than the hub's recent history of its
// network, gets a snapshot from the hub's memory (no etcd read); one that resumes within that history
// gets the events it missed from it. A stream that cannot keep up (its queue of frames is full) is
// cut: its client reconnects from the last revision it applied, as after any broken stream. When the
// hub cannot serve a resume (the client is ahead of it: another controller served it more recently,
// or etcd was restored from a backup), the stream falls back to a watch of its own (store.WatchEndpoints).

// Hub sizes.
const (
	// hubLogEvents is how many recent events the hub keeps per network for streams that resume.
	hubLogEvents = 256
	// hubQueue is how many frames a stream may have queued before it is cut.
	hubQueue = 4096
)

// frame is one event of a stream, encoded at most once whatever the number of streams it goes to.
type frame struct {
	ev   api.EndpointEvent
	once sync.Once
	data []byte
}

func newFrame(ev api.EndpointEvent) *frame { return &frame{ev: ev} }

// bytes returns the event as one line of newline-delimited JSON.
func (f *frame) bytes() []byte {
	f.once.Do(func() {
		b, err := json.Marshal(f.ev)
		if err != nil { // an api.EndpointEvent always encodes; keep the stream valid regardless
			b = []byte(`{"type":"progress","revision":0}`)
		}
		f.data = append(b, '\n')
	})
	return f.data
}

// hub is the shared endpoint watch. Its methods are safe for concurrent use.
type hub struct {
	running atomic.Bool // run was called: without it every stream has a watch of its own
	mu      sync.Mutex
	ready   chan struct{} // closed by the first snapshot
	once    sync.Once
	rev     int64 // the store revision applied in full
	feeds   map[string]*feed
	// frames counts the frames made (encoded at most once each), streams the subscriptions served from
	// the hub and fallbacks those that needed a watch of their own; tests and metrics read them.
	frames, served, fallbacks int64
}

// feed is what the hub keeps of one network.
type feed struct {
	name    string
	eps     map[string]api.Endpoint // by address
	epRev   int64                   // the latest revision of an event of this network
	log     []*frame                // recent put and delete frames, oldest first
	logFrom int64                   // log holds every event of the network with a revision above logFrom
	subs    map[*sub]struct{}
	snap    *frame // the snapshot at snapRev, kept until the network changes
	snapRev int64
}

// sub is one stream's queue of frames. It holds memory only for what is queued: thousands of idle
// streams cost next to nothing.
type sub struct {
	mu    sync.Mutex
	queue []*frame
	wake  chan struct{} // holds a token while queue is not empty
	cut   chan struct{} // closed when the stream fell behind and must end
	dead  bool
}

func newSub() *sub { return &sub{wake: make(chan struct{}, 1), cut: make(chan struct{})} }

// push queues f; it reports false, and cuts the stream, when hubQueue frames are queued already.
func (s *sub) push(f *frame) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return false
	}
	if len(s.queue) >= hubQueue {
		s.dead, s.queue = true, nil
		close(s.cut)
		return false
	}
	s.queue = append(s.queue, f)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// take returns what is queued and empties the queue.
func (s *sub) take() []*frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

func newHub() *hub { return &hub{ready: make(chan struct{}), feeds: map[string]*feed{}} }

func (h *hub) feed(network string) *feed {
	f := h.feeds[network]
	if f == nil {
		f = &feed{name: network, eps: map[string]api.Endpoint{}, subs: map[*sub]struct{}{}, logFrom: h.rev}
		h.feeds[network] = f
	}
	return f
}

// run feeds the hub from one list-watch of every endpoint until ctx ends.
func (h *hub) run(ctx context.Context, st *store.Store) error {
	h.running.Store(true)
	return st.Watch(ctx, store.KindEndpoint, hubWatcher{h})
}

type hubWatcher struct{ h *hub }

// Snapshot replaces every network's endpoints (see hub.reset).
func (w hubWatcher) Snapshot(recs []store.Record, rev int64) error {
	byNet := map[string]map[string]api.Endpoint{}
	for _, r := range recs {
		ep, err := r.Endpoint()
		if err != nil {
			continue // not an endpoint record the store can read; the cache logs it
		}
		if byNet[r.Name] == nil {
			byNet[r.Name] = map[string]api.Endpoint{}
		}
		byNet[r.Name][ep.IP] = ep
	}
	w.h.reset(byNet, rev)
	return nil
}

// Event applies one change (see hub.change).
func (w hubWatcher) Event(ev store.Event) error {
	r := ev.Record
	if ev.Type != store.EventPut {
		w.h.change(r.Name, r.IP.String(), nil, r.Revision, ev.Last)
		return nil
	}
	ep, err := r.Endpoint()
	if err != nil {
		return nil // unreadable: the cache logs it; streams never see it
	}
	w.h.change(r.Name, ep.IP, &ep, r.Revision, ev.Last)
	return nil
}

// reset replaces every network's endpoints with byNet as of rev; a stream of a network gets a
// snapshot (the history between is gone: etcd compacted it, or was restored).
func (h *hub) reset(byNet map[string]map[string]api.Endpoint, rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rev = rev
	for name := range byNet {
		h.feed(name)
	}
	for name, f := range h.feeds {
		f.eps = byNet[name]
		if f.eps == nil {
			f.eps = map[string]api.Endpoint{}
		}
		f.log, f.logFrom, f.snap = nil, rev, nil
		if f.epRev > rev { // restored from a backup: revisions went back
			f.epRev = rev
		}
		if len(f.subs) > 0 {
			h.sendLocked(f, h.snapshotLocked(f))
		}
		if len(f.subs) == 0 && len(f.eps) == 0 {
			delete(h.feeds, name)
		}
	}
	h.once.Do(func() { close(h.ready) })
}

// change applies a put of ep (nil: a delete of the endpoint at ip) at revision rev, last when it is
// the last change of that revision, and hands its frame to the network's streams.
func (h *hub) change(network, ip string, ep *api.Endpoint, rev int64, last bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.feed(network)
	typ := api.EventPut
	if ep != nil {
		f.eps[ip] = *ep
	} else {
		typ = api.EventDelete
		old, ok := f.eps[ip]
		if !ok {
			old = api.Endpoint{Network: network, IP: ip}
		}
		old.Revision = rev
		ep = &old
		delete(f.eps, ip)
	}
	if last {
		h.rev = rev
	}
	f.epRev, f.snap = rev, nil
	fr := newFrame(api.EndpointEvent{Type: typ, Endpoint: ep, Revision: rev, Last: last, Network: network})
	h.frames++
	f.log = append(f.log, fr)
	if len(f.log) > hubLogEvents { // drop the oldest revision whole: a resume needs all of a revision
		drop := f.log[0].ev.Revision
		i := 0
		for i < len(f.log) && f.log[i].ev.Revision == drop {
			i++
		}
		f.log, f.logFrom = append([]*frame(nil), f.log[i:]...), drop
	}
	h.sendLocked(f, fr)
}

// Progress tells every stream that nothing of its network changed up to rev: one frame per network
// with streams (it names the network, for host streams), shared by all of them.
func (w hubWatcher) Progress(rev int64) error {
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev <= h.rev {
		return nil
	}
	h.rev = rev
	for _, f := range h.feeds {
		if len(f.subs) == 0 {
			continue
		}
		h.frames++
		h.sendLocked(f, newFrame(api.EndpointEvent{Type: api.EventProgress, Revision: rev, Network: f.name}))
	}
	return nil
}

// sendLocked queues fr on every stream of f; a stream whose queue is full is cut.
func (h *hub) sendLocked(f *feed, fr *frame) {
	for s := range f.subs {
		if !s.push(fr) {
			delete(f.subs, s)
		}
	}
}

// snapshotLocked returns the snapshot frame of f: the one made since f last changed, shared by every
// stream that asks (change and reset drop it), else a new one at the hub's revision. A snapshot made
// at an older revision of the hub is still exact: nothing of f changed since, so a client resuming
// from that revision is replayed nothing of f. It matters when every agent reconnects at once (a
// controller restarted): at 1,000 hosts x 100 endpoints each snapshot of a network spanning every host
// is about 1 MB, and when each other network's change made a new one, the first 1,000-host run's
// controller peaked at 1.4 GiB holding copies while the streams opened.
func (h *hub) snapshotLocked(f *feed) *frame {
	if f.snap != nil {
		return f.snap
	}
	eps := make([]api.Endpoint, 0, len(f.eps))
	for _, ep := range f.eps {
		eps = append(eps, ep)
	}
	sort.Slice(eps, func(i, j int) bool { // by address, as the store lists them
		a, _ := netip.ParseAddr(eps[i].IP)
		b, _ := netip.ParseAddr(eps[j].IP)
		return a.Less(b)
	})
	f.snap, f.snapRev = newFrame(api.EndpointEvent{Type: api.EventSnapshot, Endpoints: eps, Revision: h.rev, Network: f.name}), h.rev
	h.frames++
	return f.snap
}

// subscription is what subscribe hands a stream: the frames to write first, then the queue, and the
// network's latest endpoint revision when it opened (the catch-up target).
type subscription struct {
	first  []*frame
	s      *sub
	target int64
	cancel func()
}

// subscribe opens a stream of network from fromRev. It waits for the hub's first snapshot; ok is
// false when the hub cannot serve fromRev (the client is ahead of it) and the stream needs a watch of
// its own.
func (h *hub) subscribe(ctx context.Context, network string, fromRev int64) (subscription, bool, error) {
	if !h.running.Load() {
		return subscription{}, false, nil
	}
	select {
	case <-h.ready:
	case <-ctx.Done():
		return subscription{}, false, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if fromRev > h.rev {
		h.fallbacks++
		return subscription{}, false, nil
	}
	h.served++
	s := newSub()
	out := subscription{s: s}
	out.first, out.target, out.cancel = h.attachLocked(s, network, fromRev)
	return out, true, nil
}

// wait waits for the hub's first snapshot; false when the hub does not run (every stream then needs
// a watch of its own).
func (h *hub) wait(ctx context.Context) (bool, error) {
	if !h.running.Load() {
		return false, nil
	}
	select {
	case <-h.ready:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// join adds network to a host stream's queue s (watchmux.go), which may be on many feeds, from
// fromRev: the frames to write first, the catch-up target and the function that takes s off the
// network. A revision ahead of the hub (another controller served the client more recently, or the
// store was restored from a backup) gets a snapshot, never a watch of its own: the client replaces
// what it knows of the network with it, and the hub's next events bring it forward. Call after wait.
// from is fromRev, or 0 when the stream gets a snapshot for that reason.
func (h *hub) join(s *sub, network string, fromRev int64) (first []*frame, target, from int64, leave func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fromRev > h.rev {
		h.fallbacks++
		fromRev = 0
	}
	h.served++
	first, target, leave = h.attachLocked(s, network, fromRev)
	return first, target, fromRev, leave
}

// attachLocked puts s on network's feed from fromRev (the hub serves it: fromRev <= h.rev): a
// snapshot when fromRev is 0 or older than the feed's history, else the events after fromRev.
func (h *hub) attachLocked(s *sub, network string, fromRev int64) (first []*frame, target int64, leave func()) {
	f := h.feed(network)
	switch {
	case fromRev == 0 || fromRev < f.logFrom:
		first = []*frame{h.snapshotLocked(f)}
	default:
		i := sort.Search(len(f.log), func(i int) bool { return f.log[i].ev.Revision > fromRev })
		first = append([]*frame(nil), f.log[i:]...)
	}
	f.subs[s] = struct{}{}
	leave = func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(f.subs, s)
		if len(f.subs) == 0 && len(f.eps) == 0 && h.feeds[network] == f {
			delete(h.feeds, network) // a removed network's feed goes with its last stream
		}
	}
	return first, f.epRev, leave
}

// stats returns the frames made, streams served and fallbacks so far.
func (h *hub) stats() (frames, served, fallbacks int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.frames, h.served, h.fallbacks
}
