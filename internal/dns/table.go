package dns

import (
	"net/netip"
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
type Table struct {
	mu   sync.RWMutex
	nets map[string]map[string]Record // network -> container -> record
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{nets: map[string]map[string]Record{}}
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
	m[r.Container] = r
}

// Remove drops the record of a container on a network; removing what is not there does nothing.
func (t *Table) Remove(network, container string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.nets[network], container)
	if len(t.nets[network]) == 0 {
		delete(t.nets, network)
	}
}

// SetNetwork replaces every record of a network with recs (a resynchronised endpoint list).
func (t *Table) SetNetwork(network string, recs []Record) {
	m := make(map[string]Record, len(recs))
	for _, r := range recs {
		m[r.Container] = r
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(m) == 0 {
		delete(t.nets, network)
		return
	}
	t.nets[network] = m
}

// Lookup returns the addresses that name has on the given networks (the asking container's).
func (t *Table) Lookup(networks []string, name string) []netip.Addr {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []netip.Addr
	for _, n := range networks {
		for _, r := range t.nets[n] {
			if r.matches(name) {
				out = append(out, r.IP)
			}
		}
	}
	return out
}

// Reverse returns the names of ip on the given networks.
func (t *Table) Reverse(networks []string, ip netip.Addr) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []string
	for _, n := range networks {
		for _, r := range t.nets[n] {
			if r.IP == ip && len(r.Names) > 0 {
				out = append(out, r.Names[0])
			}
		}
	}
	return out
}

func (r Record) matches(name string) bool {
	if len(r.Container) >= 12 && name == r.Container[:12] {
		return true
	}
	for _, n := range r.Names {
		n = strings.ToLower(n)
		if name == n || name == n+"."+strings.ToLower(r.Network) {
			return true
		}
	}
	return false
}
