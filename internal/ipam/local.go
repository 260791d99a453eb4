package ipam

import (
	"encoding/json"
	"fmt"
	"github.com/ovnet/ov/internal/atomicfile"
	"net/netip"
	"os"
	"sort"
	"sync"

	"github.com/ovnet/ov/internal/errdefs"
)

// Local is a host-local address allocator for bridge networks, kept in one JSON file. Every change is
// written to a temporary file and renamed over the old one, so a crash leaves either the old or the new
// state, never a torn file. A mutex serialises callers of one *Local; one file must have one *Local
// (the agent owns it).
type Local struct {
	mu   sync.Mutex
	path string
	st   localState
}

type localState struct {
	Networks map[string]*localNetwork `json:"networks"`
}

type localNetwork struct {
	// Cursor is the last address handed out: the next search starts after it (next-fit).
	Cursor netip.Addr `json:"cursor,omitzero"`
	// Owners maps an owner (container ID) to its address.
	Owners map[string]netip.Addr `json:"owners"`
}

// NewLocal opens (or creates on first write) the allocation file at path.
func NewLocal(path string) (*Local, error) {
	l := &Local{path: path, st: localState{Networks: map[string]*localNetwork{}}}
	b, err := os.ReadFile(path)
	switch {
	case os.IsNotExist(err):
		return l, nil
	case err != nil:
		return nil, fmt.Errorf("ipam: read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &l.st); err != nil {
		return nil, fmt.Errorf("ipam: %s is not a valid allocation file (%v); move it aside to start empty", path, err)
	}
	if l.st.Networks == nil {
		l.st.Networks = map[string]*localNetwork{}
	}
	for _, n := range l.st.Networks {
		if n.Owners == nil {
			n.Owners = map[string]netip.Addr{}
		}
	}
	return l, nil
}

// Allocate gives owner an address of network from r: want if it is valid, else the next free address
// after the network's cursor. The same owner asking again gets the address it holds. A wanted address
// held by another owner is errdefs.ErrConflict naming the holder.
func (l *Local) Allocate(network string, r Range, owner string, want netip.Addr) (netip.Addr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.st.Networks[network]
	if n == nil {
		n = &localNetwork{Owners: map[string]netip.Addr{}}
	}
	if held, ok := n.Owners[owner]; ok {
		if want.IsValid() && want != held {
			return netip.Addr{}, fmt.Errorf("network %q: %s already holds %s, not %s; release it first: %w", network, owner, held, want, errdefs.ErrConflict)
		}
		return held, nil
	}
	holders := make(map[netip.Addr]string, len(n.Owners))
	for o, a := range n.Owners {
		holders[a] = o
	}
	var a netip.Addr
	if want.IsValid() {
		if err := r.Check(want); err != nil {
			return netip.Addr{}, fmt.Errorf("network %q: %w", network, err)
		}
		if h, ok := holders[want]; ok {
			return netip.Addr{}, fmt.Errorf("network %q: address %s is already used by %s; choose another address: %w", network, want, h, errdefs.ErrConflict)
		}
		a = want
	} else {
		var err error
		a, err = r.Next(n.Cursor, func(c netip.Addr) bool { _, ok := holders[c]; return ok })
		if err != nil {
			return netip.Addr{}, fmt.Errorf("network %q: %w", network, err)
		}
		n.Cursor = a
	}
	n.Owners[owner] = a
	l.st.Networks[network] = n
	if err := l.save(); err != nil {
		delete(n.Owners, owner)
		return netip.Addr{}, err
	}
	return a, nil
}

// Release frees the address owner holds in network. Releasing what is not held is not an error.
func (l *Local) Release(network, owner string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.st.Networks[network]
	if n == nil {
		return nil
	}
	a, ok := n.Owners[owner]
	if !ok {
		return nil
	}
	delete(n.Owners, owner)
	if err := l.save(); err != nil {
		n.Owners[owner] = a
		return err
	}
	return nil
}

// Owners returns a copy of network's allocations, owner to address.
func (l *Local) Owners(network string) map[string]netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]netip.Addr{}
	if n := l.st.Networks[network]; n != nil {
		for o, a := range n.Owners {
			out[o] = a
		}
	}
	return out
}

// Networks returns the names of the networks that have state in the file, sorted.
func (l *Local) Networks() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.st.Networks))
	for name := range l.st.Networks {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// DropNetwork forgets every allocation and the cursor of network. Dropping an unknown network is not
// an error.
func (l *Local) DropNetwork(network string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.st.Networks[network]
	if !ok {
		return nil
	}
	delete(l.st.Networks, network)
	if err := l.save(); err != nil {
		l.st.Networks[network] = n
		return err
	}
	return nil
}

// save writes the state atomically and flushes it to disk.
func (l *Local) save() error {
	b, err := json.MarshalIndent(&l.st, "", "  ")
	if err != nil {
		return fmt.Errorf("ipam: encode state: %w", err)
	}
	if err := atomicfile.WriteSync(l.path, b, 0o600); err != nil {
		return fmt.Errorf("ipam: write %s: %w", l.path, err)
	}
	return nil
}
