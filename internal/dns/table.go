package dns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Record is one endpoint's names on one network.
type Record struct {
	Network   string
	Container string     // full container ID; its 12-digit prefix is a name too
	IP        netip.Addr // the endpoint's address on Network
	// Names are the container's name, its hostname and its aliases on Network (NAME.NETWORK is derived
	// from each by the table). Case does not matter.
	Names []string
}

// Table holds the records of the endpoints this host knows, by network. It is safe for concurrent use.
//
// Writers rebuild the index of the network they change (lowercase name -> addresses, address ->
// names) and publish a new snapshot; readers (every query) read the current snapshot without a lock.
type Table struct {
	mu   sync.Mutex                   // serialises writers
	nets map[string]map[string]Record // network -> container -> record; guarded by mu
	// pending networks (Pending) whose records are not known yet; guarded by mu
	pending map[string]bool
	snap    atomic.Pointer[snapshot] // what readers see
}

// snapshot is an immutable view of the table: network -> its index. A writer copies the outer map and
// replaces one network's index.
type snapshot map[string]*netIndex

// netIndex is one network's names, precomputed for lookups.
type netIndex struct {
	names   map[string][]netip.Addr // lowercase name (no trailing dot) -> addresses, in container order
	rev     map[netip.Addr][]string // address -> the first name of each record holding it
	pending bool                    // its records are not known yet (Pending)
}

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{nets: map[string]map[string]Record{}, pending: map[string]bool{}}
	t.snap.Store(&snapshot{})
	return t
}

// Set adds r or replaces the record of (r.Network, r.Container).
func (t *Table) Set(r Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.nets[r.Network]
	if m == nil {
		m = map[string]Record{}
		t.nets[r.Network] = m
	}
	r.Names = append([]string(nil), r.Names...) // the caller may reuse its slice
	m[r.Container] = r
	t.publish(r.Network)
}

// Remove drops the record of a container on a network; removing what is not there does nothing.
func (t *Table) Remove(network, container string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.nets[network][container]; !ok {
		return
	}
	delete(t.nets[network], container)
	if len(t.nets[network]) == 0 {
		delete(t.nets, network)
	}
	t.publish(network)
}

// Pending marks a network whose records are not known yet (an agent that just restarted, before the
// controller's endpoint list arrives): a container on it asking for an unknown single-label name gets
// SERVFAIL (its resolver library tries again) instead of a NXDOMAIN that would be wrong for a live
// container. SetNetwork ends it. Networks are not pending unless marked.
func (t *Table) Pending(network string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending[network] = true
	t.publish(network)
}

// SetNetwork replaces every record of a network with recs (a resynchronised endpoint list); a pending
// network is known from then on.
func (t *Table) SetNetwork(network string, recs []Record) {
	m := make(map[string]Record, len(recs))
	for _, r := range recs {
		r.Network = network
		r.Names = append([]string(nil), r.Names...)
		m[r.Container] = r
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, network)
	if len(m) == 0 {
		delete(t.nets, network)
	} else {
		t.nets[network] = m
	}
	t.publish(network)
}

// publish rebuilds the index of one network and stores a new snapshot. t.mu is held.
func (t *Table) publish(network string) {
	old := *t.snap.Load()
	next := make(snapshot, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if recs := t.nets[network]; len(recs) > 0 || t.pending[network] {
		next[network] = buildIndex(network, recs)
		next[network].pending = t.pending[network]
	} else {
		delete(next, network)
	}
	t.snap.Store(&next)
}

// buildIndex computes a network's index. Records are taken in container order, so that the order of
// several addresses for one name is stable (the server rotates it per query).
func buildIndex(network string, recs map[string]Record) *netIndex {
	ids := make([]string, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	x := &netIndex{names: map[string][]netip.Addr{}, rev: map[netip.Addr][]string{}}
	lnet := strings.ToLower(network)
	for _, id := range ids {
		r := recs[id]
		if !r.IP.IsValid() {
			continue
		}
		seen := map[string]bool{}
		add := func(name string) {
			if name == "" || seen[name] {
				return
			}
			seen[name] = true
			x.names[name] = append(x.names[name], r.IP)
		}
		if len(r.Container) >= 12 {
			add(strings.ToLower(r.Container[:12]))
		}
		for _, n := range r.Names {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if n == "" {
				continue
			}
			add(n)
			add(n + "." + lnet)
		}
		if len(r.Names) > 0 && r.Names[0] != "" {
			x.rev[r.IP] = append(x.rev[r.IP], strings.TrimSuffix(r.Names[0], "."))
		}
	}
	return x
}

// Lookup returns the addresses that name has on the given networks (the asking container's).
func (t *Table) Lookup(networks []string, name string) []netip.Addr {
	return t.appendLookup(nil, networks, []byte(strings.ToLower(strings.TrimSuffix(name, "."))))
}

// appendLookup appends the addresses of lname (lowercase, no trailing dot) on networks to dst. It
// takes no lock and, when dst has room, allocates nothing.
func (t *Table) appendLookup(dst []netip.Addr, networks []string, lname []byte) []netip.Addr {
	snap := *t.snap.Load()
	for _, n := range networks {
		if x := snap[n]; x != nil {
			dst = append(dst, x.names[string(lname)]...)
		}
	}
	return dst
}

// anyPending reports whether one of the networks is pending.
func (t *Table) anyPending(networks []string) bool {
	snap := *t.snap.Load()
	for _, n := range networks {
		if x := snap[n]; x != nil && x.pending {
			return true
		}
	}
	return false
}

// Reverse returns the names of ip on the given networks.
func (t *Table) Reverse(networks []string, ip netip.Addr) []string {
	snap := *t.snap.Load()
	var out []string
	for _, n := range networks {
		if x := snap[n]; x != nil {
			out = append(out, x.rev[ip]...)
		}
	}
	return out
}
