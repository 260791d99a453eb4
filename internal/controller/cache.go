package controller

import (
	"log/slog"
	"net/netip"
	"sync"

	"github.com/ovnet/ov/internal/controller/store"
)

// cache mirrors the parts of the /ov/v1/ tree a controller needs: networks, hosts, which addresses
// are taken and each network's cursor, each kept by its own list-watch (the owner keys are not
// watched: nothing here needs them). It is a hint for picking candidates and checking tokens, never
// the source of truth.
type cache struct {
	log   *slog.Logger
	mu    sync.Mutex
	nets  map[string]*netState
	hosts map[string]store.Host
	// hostsRev is the revision of the last change to a host record this cache saw (0: none yet):
	// agents read the host list again when it moves (heartbeat answers carry it).
	hostsRev int64
	epRev    int64 // last revision the endpoints watch applied

	secrets map[string]store.Secret // the controller's secrets (gossip keyring, join token, host-token key)
	synced  map[store.KeyKind]bool  // kinds whose first snapshot has been applied

	onSecret func(name string, s store.Secret) // called (under mu) when a secret's value changes; may be nil
}

// netState is what the cache and this controller know about one network's addresses.
type netState struct {
	net        store.Network
	known      bool                    // net is set (the network exists as far as the cache knows)
	taken      map[netip.Addr]struct{} // addresses with an endpoint key
	inflight   map[netip.Addr]struct{} // candidates this controller is trying right now
	cursor     netip.Addr              // where this controller's next search starts
	cursorRev  int64                   // revision of the etcd cursor cursor was last taken from
	etcdCursor netip.Addr              // the cursor key as last seen
	etcdRev    int64                   // its ModRevision
	epRev      int64                   // the latest revision of an endpoint of this network the cache applied
}

// cachedKinds are the kinds of keys the cache watches, one list-watch each.
var cachedKinds = []store.KeyKind{store.KindNetwork, store.KindHost, store.KindEndpoint, store.KindCursor, store.KindSecret}

func newCache(log *slog.Logger) *cache {
	return &cache{log: log, nets: map[string]*netState{}, hosts: map[string]store.Host{},
		secrets: map[string]store.Secret{}, synced: map[store.KeyKind]bool{}}
}

// state returns the netState of name, creating an empty one. Callers hold c.mu.
func (c *cache) state(name string) *netState {
	st := c.nets[name]
	if st == nil {
		st = &netState{taken: map[netip.Addr]struct{}{}, inflight: map[netip.Addr]struct{}{}}
		c.nets[name] = st
	}
	return st
}

// kindWatcher feeds one kind's list-watch into the cache.
type kindWatcher struct {
	c    *cache
	kind store.KeyKind
}

// Snapshot replaces what the cache knows of the watcher's kind (and only that).
func (w kindWatcher) Snapshot(recs []store.Record, rev int64) error {
	c := w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	switch w.kind {
	case store.KindNetwork:
		for _, st := range c.nets {
			st.known = false
		}
	case store.KindHost:
		c.hosts = map[string]store.Host{}
	case store.KindEndpoint:
		for _, st := range c.nets {
			st.taken = map[netip.Addr]struct{}{}
		}
		c.epRev = rev
	case store.KindCursor:
		for _, st := range c.nets {
			st.etcdCursor, st.etcdRev = netip.Addr{}, 0
		}
	case store.KindSecret:
		c.secrets = map[string]store.Secret{}
	}
	for _, r := range recs {
		c.put(r)
	}
	c.synced[w.kind] = true
	c.log.Debug("cache snapshot", "kind", w.kind.String(), "revision", rev, "keys", len(recs))
	return nil
}

func (w kindWatcher) Event(ev store.Event) error {
	c := w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	r := ev.Record
	if w.kind == store.KindEndpoint {
		c.epRev = r.Revision
	}
	if ev.Type == store.EventPut {
		c.put(r)
		return nil
	}
	st := c.nets[r.Name]
	switch r.Kind {
	case store.KindNetwork:
		if st != nil {
			st.known, st.net = false, store.Network{}
			st.cursor, st.cursorRev = netip.Addr{}, 0
		}
	case store.KindHost:
		delete(c.hosts, r.Name)
		c.hostsRev = max(c.hostsRev, r.Revision)
	case store.KindEndpoint:
		if st != nil {
			delete(st.taken, r.IP)
			st.epRev = max(st.epRev, r.Revision)
		}
	case store.KindCursor:
		if st != nil {
			st.etcdCursor, st.etcdRev = netip.Addr{}, 0
		}
	case store.KindSecret:
		delete(c.secrets, r.Name)
	}
	return nil
}

func (w kindWatcher) Progress(int64) error { return nil }

// put applies one record. Callers hold c.mu.
func (c *cache) put(r store.Record) {
	switch r.Kind {
	case store.KindNetwork:
		n, err := r.Network()
		if err != nil {
			c.log.Warn("cache: skipping bad network record", "key", r.Key, "err", err)
			return
		}
		st := c.state(r.Name)
		if st.known && st.net.CreateRevision != n.CreateRevision {
			// Recreated: forget the old incarnation's cursor.
			st.cursor, st.cursorRev = netip.Addr{}, 0
		}
		st.net, st.known = n, true
	case store.KindHost:
		h, err := r.Host()
		if err != nil {
			c.log.Warn("cache: skipping bad host record", "key", r.Key, "err", err)
			return
		}
		c.hosts[r.Name] = h
		c.hostsRev = max(c.hostsRev, r.Revision, h.Revision)
	case store.KindEndpoint:
		st := c.state(r.Name)
		st.taken[r.IP], st.epRev = struct{}{}, max(st.epRev, r.Revision)
	case store.KindCursor:
		if a, err := r.Cursor(); err == nil {
			st := c.state(r.Name)
			st.etcdCursor, st.etcdRev = a, r.Revision
		}
	case store.KindSecret:
		if v, err := r.Secret(); err == nil {
			old, had := c.secrets[r.Name]
			c.secrets[r.Name] = store.Secret{Value: v, Revision: r.Revision}
			if c.onSecret != nil && (!had || string(old.Value) != string(v)) {
				c.onSecret(r.Name, c.secrets[r.Name])
			}
		}
	}
}

// learnSecret records a secret this controller just wrote, so that it acts on it before its watch
// delivers it (an older revision than the cached one is ignored).
func (c *cache) learnSecret(name string, s store.Secret) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.secrets[name]
	if ok && old.Revision >= s.Revision {
		return
	}
	c.secrets[name] = s
	if c.onSecret != nil && (!ok || string(old.Value) != string(s.Value)) {
		c.onSecret(name, s)
	}
}

// secret returns the cached secret, if any.
func (c *cache) secret(name string) (store.Secret, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.secrets[name]
	return s, ok
}

// hasSynced tells whether the first snapshot of kind has been applied: from then on the cache knows
// every key of that kind (up to the watch's small lag).
func (c *cache) hasSynced(kind store.KeyKind) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.synced[kind]
}

// network returns the cached network, if any.
func (c *cache) network(name string) (store.Network, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.nets[name]; st != nil && st.known {
		return st.net, true
	}
	return store.Network{}, false
}

// host returns the cached host, if any.
// hostsRevision is the revision of the last host record change the cache saw.
func (c *cache) hostsRevision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hostsRev
}

func (c *cache) host(name string) (store.Host, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.hosts[name]
	return h, ok
}

// pick chooses a candidate address in n: the next one after the cursor that is neither taken nor
// in flight, and marks it in flight. The cursor follows the etcd cursor when another controller moved
// it since this one last looked.
func (c *cache) pick(n store.Network) (a, prev netip.Addr, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(n.Name)
	if st.etcdRev > st.cursorRev && st.etcdCursor.IsValid() {
		st.cursor, st.cursorRev = st.etcdCursor, st.etcdRev
	}
	prev = st.cursor
	a, err = n.Range.Next(st.cursor, func(a netip.Addr) bool {
		if _, ok := st.taken[a]; ok {
			return true
		}
		_, ok := st.inflight[a]
		return ok
	})
	if err != nil {
		return netip.Addr{}, netip.Addr{}, err
	}
	st.cursor = a
	st.inflight[a] = struct{}{}
	return a, prev, nil
}

// unpick gives back a candidate that was not used (the owner already held an address, or the
// attempt failed): the cursor goes back to where it was, unless it moved on meanwhile.
func (c *cache) unpick(network string, a, prev netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(network)
	delete(st.inflight, a)
	if st.cursor == a {
		st.cursor = prev
	}
}

// settle ends a candidate. rev > 0 is the revision at which the address was seen held (by us or by
// another owner); it marks the address taken unless the cache has already applied that revision (and
// perhaps a later release).
func (c *cache) settle(network string, a netip.Addr, rev int64, ours bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(network)
	delete(st.inflight, a)
	if rev > c.epRev {
		st.taken[a] = struct{}{}
	}
	if ours && rev > st.cursorRev {
		st.cursorRev = rev
	}
}

// endpointRevision returns the latest revision of an endpoint of network the cache applied (0: none).
func (c *cache) endpointRevision(network string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.nets[network]; st != nil {
		return st.epRev
	}
	return 0
}
