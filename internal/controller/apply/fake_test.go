package apply

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// fakeCluster is an in-memory controller with the same rules as the real one where apply relies on them:
// names are unique, subnets and VNIs do not overlap, updates compare the revision, deletes of networks in
// use fail without force.
type fakeCluster struct {
	mu       sync.Mutex
	rev      int64
	vni      uint32
	networks map[string]api.Network
	hosts    map[string]api.Host
	inUse    map[string]bool // networks that have endpoints
	writes   int
	// before runs before each write, without the lock: tests use it to race the apply.
	before func(op string)
}

var _ Cluster = (*fakeCluster)(nil)

func newFake() *fakeCluster {
	return &fakeCluster{networks: map[string]api.Network{}, hosts: map[string]api.Host{}, inUse: map[string]bool{}, vni: 4096}
}

func (f *fakeCluster) hook(op string) {
	if f.before != nil {
		f.before(op)
	}
}

func (f *fakeCluster) ListNetworks(ctx context.Context) ([]api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Network
	for _, n := range f.networks {
		n.Labels = maps.Clone(n.Labels)
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeCluster) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	f.hook("create " + n.Name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := n.Validate(); err != nil {
		return api.Network{}, err
	}
	if _, ok := f.networks[n.Name]; ok {
		return api.Network{}, fmt.Errorf("network %q exists: %w", n.Name, errdefs.ErrAlreadyExists)
	}
	if n.Subnet == "" {
		for i := 100; ; i++ {
			s := fmt.Sprintf("10.%d.0.0/24", i)
			if f.free(s) {
				n.Subnet = s
				break
			}
		}
	}
	if !f.free(n.Subnet) {
		return api.Network{}, fmt.Errorf("network %q: subnet %s overlaps another network: %w", n.Name, n.Subnet, errdefs.ErrConflict)
	}
	if n.Gateway == "" {
		n.Gateway = netip.MustParsePrefix(n.Subnet).Addr().Next().String()
	}
	if n.VNI == 0 {
		f.vni++
		n.VNI = f.vni
	}
	for _, o := range f.networks {
		if o.VNI == n.VNI {
			return api.Network{}, fmt.Errorf("network %q: VNI %d is taken: %w", n.Name, n.VNI, errdefs.ErrConflict)
		}
	}
	f.rev++
	f.writes++
	n.Revision = f.rev
	n.ID = fmt.Sprintf("id-%d", f.rev)
	n.Labels = maps.Clone(n.Labels)
	f.networks[n.Name] = n
	return n, nil
}

func (f *fakeCluster) free(subnet string) bool {
	s := netip.MustParsePrefix(subnet)
	for _, o := range f.networks {
		if netip.MustParsePrefix(o.Subnet).Overlaps(s) {
			return false
		}
	}
	return true
}

func (f *fakeCluster) UpdateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	f.hook("update " + n.Name)
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.networks[n.Name]
	if !ok {
		return api.Network{}, fmt.Errorf("network %q: %w", n.Name, errdefs.ErrNotFound)
	}
	if cur.Revision != n.Revision {
		return api.Network{}, fmt.Errorf("network %q changed since revision %d (now %d): %w", n.Name, n.Revision, cur.Revision, errdefs.ErrConflict)
	}
	if n.Subnet != cur.Subnet || n.VNI != cur.VNI || n.Driver != cur.Driver || n.Gateway != cur.Gateway || n.MTU != cur.MTU || n.IPRange != cur.IPRange {
		return api.Network{}, fmt.Errorf("network %q: only labels and internal change in place: %w", n.Name, errdefs.ErrInvalidArgument)
	}
	f.rev++
	f.writes++
	cur.Labels = maps.Clone(n.Labels)
	cur.Internal = n.Internal
	cur.Revision = f.rev
	f.networks[n.Name] = cur
	return cur, nil
}

func (f *fakeCluster) DeleteNetwork(ctx context.Context, name string, force bool) error {
	f.hook("delete " + name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.networks[name]; !ok {
		return fmt.Errorf("network %q: %w", name, errdefs.ErrNotFound)
	}
	if f.inUse[name] && !force {
		return fmt.Errorf("network %q has endpoints; disconnect them or use --force: %w", name, errdefs.ErrConflict)
	}
	f.writes++
	delete(f.networks, name)
	return nil
}

func (f *fakeCluster) ListHosts(ctx context.Context) ([]api.Host, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Host
	for _, h := range f.hosts {
		h.Labels = maps.Clone(h.Labels)
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeCluster) RegisterHost(ctx context.Context, h api.Host) (api.Host, error) {
	f.hook("register " + h.Name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := h.Validate(); err != nil {
		return api.Host{}, err
	}
	f.rev++
	f.writes++
	h.Revision = f.rev
	h.Labels = maps.Clone(h.Labels)
	f.hosts[h.Name] = h
	return h, nil
}

// dump renders the fake's state, one object a line, for comparisons.
func (f *fakeCluster) dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for _, h := range f.hosts {
		lines = append(lines, fmt.Sprintf("host %s %s %v", h.Name, h.Address, h.Labels))
	}
	for _, n := range f.networks {
		lines = append(lines, fmt.Sprintf("network %s %s %s gw=%s vni=%d mtu=%d internal=%t %v", n.Name, n.Driver, n.Subnet, n.Gateway, n.VNI, n.MTU, n.Internal, n.Labels))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
