package dns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
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
// Each network keeps an index (lowercase name -> addresses, address -> names) that writers update in
// place for the records they change, so a Set costs the names of one record, whatever the size of
// the network; queries read it under a read lock without allocating.
type Table struct {
	mu   sync.RWMutex
	nets map[string]*network
}

// network is one network's records and their index.
type network struct {
	name    string // lowercase
	recs    map[string]Record
	names   map[string][]netip.Addr // lowercase name (no trailing dot) -> addresses
	rev     map[netip.Addr][]string // address -> the first name of each record holding it
	pending bool                    // its records are not known yet (Pending)
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{nets: map[string]*network{}}
}

// net returns a network's entry, creating it. t.mu is held for writing.
func (t *Table) net(name string) *network {
	n := t.nets[name]
	if n == nil {
		n = newNetwork(name)
		t.nets[name] = n
	}
	return n
}

func newNetwork(name string) *network {
	return &network{name: strings.ToLower(name), recs: map[string]Record{}, names: map[string][]netip.Addr{}, rev: map[netip.Addr][]string{}}
}

// gc drops a network entry without records that is not pending. t.mu is held for writing.
func (t *Table) gc(name string) {
	if n := t.nets[name]; n != nil && len(n.recs) == 0 && !n.pending {
		delete(t.nets, name)
	}
}

// Set adds r or replaces the record of (r.Network, r.Container).
func (t *Table) Set(r Record) {
	r.Names = slices.Clone(r.Names) // the caller may reuse its slice
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.net(r.Network)
	if old, ok := n.recs[r.Container]; ok {
		n.unindex(old)
	}
	n.recs[r.Container] = r
	n.index(r)
}

// Remove drops the record of a container on a network; removing what is not there does nothing.
func (t *Table) Remove(network, container string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nets[network]
	if n == nil {
		return
	}
	if old, ok := n.recs[container]; ok {
		n.unindex(old)
		delete(n.recs, container)
	}
	t.gc(network)
}

// Pending marks a network whose records are not known yet (an agent that just restarted, before the
// controller's endpoint list arrives): a container on it asking for an unknown single-label name gets
// SERVFAIL (its resolver library tries again) instead of a NXDOMAIN that would be wrong for a live
// container. SetNetwork ends it. Networks are not pending unless marked.
func (t *Table) Pending(network string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.net(network).pending = true
}

// IsPending reports whether a network is pending (Pending, SetNetworkPending).
func (t *Table) IsPending(network string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := t.nets[network]
	return n != nil && n.pending
}

// SetNetwork replaces every record of a network with recs (a resynchronised endpoint list); a pending
// network is known from then on.
//
// The new index is built before the table is locked, so queries wait only for the swap.
func (t *Table) SetNetwork(network string, recs []Record) {
	t.setNetwork(network, recs, false)
}

// SetNetworkPending replaces every record of a network with recs, as SetNetwork, and keeps (or
// makes) the network pending, in one step: records known from a copy (an agent's state file after a
// restart) while their source has not confirmed them yet.
func (t *Table) SetNetworkPending(network string, recs []Record) {
	t.setNetwork(network, recs, true)
}

func (t *Table) setNetwork(network string, recs []Record, pending bool) {
	n := newNetwork(network)
	n.pending = pending
	for _, r := range recs {
		r.Network = network
		r.Names = slices.Clone(r.Names)
		if old, ok := n.recs[r.Container]; ok {
			n.unindex(old)
		}
		n.recs[r.Container] = r
		n.index(r)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nets[network] = n
	t.gc(network)
}

// keys calls fn with each name of r: its short ID, and each name and NAME.NETWORK, lowercased, once.
func (n *network) keys(r Record, fn func(string)) {
	var seen []string
	add := func(k string) {
		if k != "" && !slices.Contains(seen, k) {
			seen = append(seen, k)
			fn(k)
		}
	}
	if len(r.Container) >= 12 {
		add(strings.ToLower(r.Container[:12]))
	}
	for _, name := range r.Names {
		if name = strings.ToLower(strings.TrimSuffix(name, ".")); name != "" {
			add(name)
			add(name + "." + n.name)
		}
	}
}

func (n *network) index(r Record) {
	if !r.IP.IsValid() {
		return
	}
	n.keys(r, func(k string) { n.names[k] = append(n.names[k], r.IP) })
	if len(r.Names) > 0 && strings.TrimSuffix(r.Names[0], ".") != "" {
		n.rev[r.IP] = append(n.rev[r.IP], strings.TrimSuffix(r.Names[0], "."))
	}
}

func (n *network) unindex(r Record) {
	if !r.IP.IsValid() {
		return
	}
	n.keys(r, func(k string) {
		if i := slices.Index(n.names[k], r.IP); i >= 0 {
			n.names[k] = slices.Delete(n.names[k], i, i+1)
		}
		if len(n.names[k]) == 0 {
			delete(n.names, k)
		}
	})
	if len(r.Names) > 0 {
		if i := slices.Index(n.rev[r.IP], strings.TrimSuffix(r.Names[0], ".")); i >= 0 {
			n.rev[r.IP] = slices.Delete(n.rev[r.IP], i, i+1)
		}
		if len(n.rev[r.IP]) == 0 {
			delete(n.rev, r.IP)
		}
	}
}

// Lookup returns the addresses that name has on the given networks (the asking container's).
func (t *Table) Lookup(networks []string, name string) []netip.Addr {
	return t.appendLookup(nil, networks, []byte(strings.ToLower(strings.TrimSuffix(name, "."))))
}

// appendLookup appends the addresses of lname (lowercase, no trailing dot) on networks to dst; when
// dst has room, it allocates nothing.
func (t *Table) appendLookup(dst []netip.Addr, networks []string, lname []byte) []netip.Addr {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, name := range networks {
		if n := t.nets[name]; n != nil {
			dst = append(dst, n.names[string(lname)]...)
		}
	}
	return dst
}

// anyPending reports whether one of the networks is pending.
func (t *Table) anyPending(networks []string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, name := range networks {
		if n := t.nets[name]; n != nil && n.pending {
			return true
		}
	}
	return false
}

// Reverse returns the names of ip on the given networks.
func (t *Table) Reverse(networks []string, ip netip.Addr) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []string
	for _, name := range networks {
		if n := t.nets[name]; n != nil {
			out = append(out, n.rev[ip]...)
		}
	}
	return out
}
