package overlay

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/membership"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/testutil"
	"github.com/ovnet/ov/internal/vxlan"
)

// fakeController is an in-memory controller: networks, hosts, endpoints with next-fit addresses.
type fakeController struct {
	mu        sync.Mutex
	down      bool
	networks  map[string]api.Network
	hosts     map[string]api.Host
	endpoints map[string]api.Endpoint // network/host/container
	next      map[string]int
	reports   [][]api.Endpoint
	tokens    []string
	keyring   api.GossipKeyring
	dataplane []string // the last data plane report (dataplane_test.go)
	refuse    int      // heartbeats to refuse (401) before accepting them again
	lose      int      // allocations to make but answer as if the controller's answer was lost
	listHosts int      // ListHosts calls (hostlist_test.go)
	failRel   int      // releases to refuse as unreachable (release_test.go)
	onRelease func()   // called at the start of every release, outside mu (release_test.go)
}

func newFakeController() *fakeController {
	return &fakeController{
		networks:  map[string]api.Network{"front": {Name: "front", Driver: api.DriverOverlay, Subnet: "10.20.0.0/24", Gateway: "10.20.0.1", VNI: 4096}},
		hosts:     map[string]api.Host{},
		endpoints: map[string]api.Endpoint{},
		next:      map[string]int{},
		keyring:   api.GossipKeyring{Keys: []string{key1}, Version: 1},
	}
}

// Gossip keys of the fake cluster (base64 of 32 bytes).
var (
	key1 = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	key2 = base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
)

var errDown = fmt.Errorf("dial tcp 192.0.2.1:7480: connection refused: %w", errdefs.ErrUnavailable)

func (f *fakeController) check() error {
	if f.down {
		return errDown
	}
	return nil
}

type tokenClient struct {
	*fakeController
	token string
}

func (f *fakeController) connect(token string) Controller {
	f.mu.Lock()
	f.tokens = append(f.tokens, token)
	f.mu.Unlock()
	return tokenClient{f, token}
}

func (f *fakeController) ListNetworks(ctx context.Context) ([]api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	var out []api.Network
	for _, n := range f.networks {
		out = append(out, n)
	}
	return out, nil
}
func (f *fakeController) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return api.Network{}, err
	}
	f.networks[n.Name] = n
	return n, nil
}
func (f *fakeController) DeleteNetwork(ctx context.Context, name string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.networks, name)
	return f.check()
}
func (c tokenClient) RegisterHost(ctx context.Context, h api.Host) (api.Host, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return api.Host{}, err
	}
	if _, ok := c.hosts[h.Name]; ok {
		if c.token != "ovh."+h.Name {
			return api.Host{}, fmt.Errorf("host %q is already registered: %w", h.Name, errdefs.ErrAlreadyExists)
		}
		return h, nil
	}
	if c.token != "join" {
		return api.Host{}, fmt.Errorf("not registered: %w", errdefs.ErrUnauthorized)
	}
	c.hosts[h.Name] = h
	h.Token = "ovh." + h.Name
	return h, nil
}
func (c tokenClient) Heartbeat(ctx context.Context, host string) (api.Host, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return api.Host{}, err
	}
	h, ok := c.hosts[host]
	if c.refuse > 0 {
		c.refuse--
		ok = false
	}
	if !ok || c.token != "ovh."+host {
		return api.Host{}, fmt.Errorf("the token is not valid for this cluster (wrong token, or the host was removed): %w", errdefs.ErrUnauthorized)
	}
	h.GossipKeyringVersion = c.keyring.Version
	return h, nil
}
func (f *fakeController) ListHosts(ctx context.Context) ([]api.Host, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listHosts++
	if err := f.check(); err != nil {
		return nil, err
	}
	var out []api.Host
	for _, h := range f.hosts {
		out = append(out, h)
	}
	return out, nil
}
func (f *fakeController) Allocate(ctx context.Context, ep api.Endpoint) (api.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return api.Endpoint{}, err
	}
	if ep.IP == "" {
		f.next[ep.Network]++
		ep.IP = fmt.Sprintf("10.20.0.%d", f.next[ep.Network]+1)
	}
	ep.VTEP = f.hosts[ep.Host].Address
	f.endpoints[ep.Network+"/"+ep.Host+"/"+ep.Container] = ep
	if f.lose > 0 {
		f.lose--
		return api.Endpoint{}, fmt.Errorf("allocate: %w", context.DeadlineExceeded)
	}
	return ep, nil
}
func (f *fakeController) Release(ctx context.Context, network, host, container string) error {
	f.mu.Lock()
	hook := f.onRelease
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if f.failRel > 0 {
		f.failRel--
		return errDown
	}
	delete(f.endpoints, network+"/"+host+"/"+container)
	return nil
}
func (f *fakeController) Reconcile(ctx context.Context, host string, have []api.Endpoint) ([]api.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	f.reports = append(f.reports, have)
	return nil, nil
}
func (f *fakeController) WatchEndpoints(ctx context.Context, network string, fromRev int64, fn func(api.EndpointEvent) error) error {
	<-ctx.Done()
	return ctx.Err()
}
func (c tokenClient) GossipKeyring(ctx context.Context) (api.GossipKeyring, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return api.GossipKeyring{}, err
	}
	if _, ok := c.hosts[strings.TrimPrefix(c.token, "ovh.")]; !ok {
		return api.GossipKeyring{}, fmt.Errorf("the gossip keyring is given only to registered hosts: %w", errdefs.ErrUnauthorized)
	}
	return c.keyring, nil
}
func (f *fakeController) held() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k, ep := range f.endpoints {
		out = append(out, k+"="+ep.IP)
	}
	return out
}

// fakeDataplane records the last state it was asked to converge to.
type fakeDataplane struct {
	mu    sync.Mutex
	last  vxlan.State
	kicks int
	fail  error
}

func (p *fakeDataplane) Reconcile(ctx context.Context, s vxlan.State) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = s
	return p.fail
}
func (p *fakeDataplane) Run(ctx context.Context, desired func() vxlan.State) error {
	<-ctx.Done()
	return nil
}
func (p *fakeDataplane) Kick() { p.mu.Lock(); p.kicks++; p.mu.Unlock() }

type fakeMembers struct {
	mu      sync.Mutex
	members []membership.Member
	hosts   []membership.Host
	keys    [][]byte
	changes chan struct{}
}

func (m *fakeMembers) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (m *fakeMembers) Members() []membership.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.members
}
func (m *fakeMembers) Changes() <-chan struct{}     { return m.changes }
func (m *fakeMembers) SetHosts(h []membership.Host) { m.mu.Lock(); m.hosts = h; m.mu.Unlock() }
func (m *fakeMembers) SetKeyring(k [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = k
	return nil
}
func (m *fakeMembers) keyring() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.keys
}

type harness struct {
	d    *Driver
	ctl  *fakeController
	dp   *fakeDataplane
	mem  *fakeMembers
	path string
	stop func()
	// links in each fake namespace
	nsLinks map[string][]string
}

func newHarness(t *testing.T, ctl *fakeController, path string) *harness {
	t.Helper()
	h := startAgent(t, Config{
		Host: "host1", Address: netip.MustParseAddr("192.168.77.11"), StatePath: path,
		Connect: ctl.connect, JoinToken: "join",
		RequestTimeout: time.Second, Heartbeat: 50 * time.Millisecond, TokenRefusalWindow: 200 * time.Millisecond,
	})
	h.ctl = ctl
	testutil.Eventually(t, 5*time.Second, func() error { _, err := h.d.ready(); return err })
	return h
}

// startAgent runs a driver with cfg and fake data plane, members and namespaces (cfg's Dataplane
// and Members are replaced) until the test ends or h.stop.
func startAgent(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{dp: &fakeDataplane{}, mem: &fakeMembers{changes: make(chan struct{}, 1)}, path: cfg.StatePath, nsLinks: map[string][]string{}}
	cfg.Dataplane, cfg.Members = h.dp, h.mem
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	d.links = func(p string) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		names := append([]string{"lo"}, h.nsLinks[p]...)
		// the data plane's work: every endpoint of the last state has its interface
		h.dp.mu.Lock()
		for _, ns := range h.dp.last.Networks {
			for _, e := range ns.Endpoints {
				if e.NetNSPath == p {
					names = append(names, e.IfName)
				}
			}
		}
		h.dp.mu.Unlock()
		return names, nil
	}
	d.routes = func() ([]netlink.Route, error) {
		return []netlink.Route{{Dst: netip.MustParsePrefix("192.168.77.0/24"), Dev: "eth0"}}, nil
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	h.stop = func() { cancel(); <-done }
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func gossipAddr(ip string) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), 7946)
}

// render prints a desired state compactly for comparison.
func render(s vxlan.State) []string {
	var out []string
	for _, ns := range s.Networks {
		out = append(out, fmt.Sprintf("net %s vni=%d gw=%s", ns.Network.Name, ns.Network.VNI, ns.Network.Gateway))
		for _, e := range ns.Endpoints {
			out = append(out, fmt.Sprintf("  local %s %s %s", e.IP, e.IfName, filepath.Base(e.NetNSPath)))
		}
		for _, p := range ns.Peers {
			out = append(out, fmt.Sprintf("  peer %s via %s", p.IP, p.VTEP))
		}
		for _, v := range ns.VTEPs {
			out = append(out, fmt.Sprintf("  vtep %s", v))
		}
	}
	return out
}

func TestAttachProgramsAndDesiredFollowsPeersAndLiveness(t *testing.T) {
	ctl := newFakeController()
	ctl.hosts["host2"] = api.Host{Name: "host2", Address: "192.168.77.12"}
	ctl.hosts["host3"] = api.Host{Name: "host3", Address: "192.168.77.13"}
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	ctx := context.Background()

	ep, err := h.d.Attach(ctx, driver.AttachRequest{Network: "front", Container: "c1", Netns: "/run/ov/netns/c1"})
	if err != nil {
		t.Fatal(err)
	}
	want := api.ContainerEndpoint{Network: "front", Driver: "overlay", Interface: "eth0", IP: "10.20.0.2", PrefixLen: 24, Gateway: "10.20.0.1", MAC: "02:42:0a:14:00:02"}
	if diff := cmp.Diff(want, ep); diff != "" {
		t.Fatalf("endpoint (-want +got):\n%s", diff)
	}
	// Remote endpoints arrive through the watch.
	h.d.apply("front", api.EndpointEvent{Type: api.EventSnapshot, Revision: 10, Endpoints: []api.Endpoint{
		{Network: "front", Host: "host1", Container: "c1", IP: "10.20.0.2"},
		{Network: "front", Host: "host2", Container: "c2", IP: "10.20.0.3", VTEP: "192.168.77.12"},
		{Network: "front", Host: "host3", Container: "c3", IP: "10.20.0.4", VTEP: "192.168.77.13"},
	}})
	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"snapshot", func() {}, []string{
			"net front vni=4096 gw=10.20.0.1", "  local 10.20.0.2 eth0 c1",
			"  peer 10.20.0.3 via 192.168.77.12", "  peer 10.20.0.4 via 192.168.77.13",
			"  vtep 192.168.77.12", "  vtep 192.168.77.13"}},
		{"host3 dies: its entries are withdrawn", func() {
			h.mem.mu.Lock()
			h.mem.members = []membership.Member{{Name: "host2", Addr: gossipAddr("192.168.77.12"), Alive: true}, {Name: "host3", Addr: gossipAddr("192.168.77.13"), Alive: false}}
			h.mem.mu.Unlock()
		}, []string{
			"net front vni=4096 gw=10.20.0.1", "  local 10.20.0.2 eth0 c1",
			"  peer 10.20.0.3 via 192.168.77.12", "  vtep 192.168.77.12"}},
		{"c2 released: gone", func() {
			h.d.apply("front", api.EndpointEvent{Type: api.EventDelete, Revision: 11, Endpoint: &api.Endpoint{Network: "front", Host: "host2", Container: "c2", IP: "10.20.0.3"}})
		}, []string{"net front vni=4096 gw=10.20.0.1", "  local 10.20.0.2 eth0 c1"}},
		{"host3 back", func() {
			h.mem.mu.Lock()
			h.mem.members = []membership.Member{{Name: "host3", Addr: gossipAddr("192.168.77.13"), Alive: true}}
			h.mem.mu.Unlock()
		}, []string{"net front vni=4096 gw=10.20.0.1", "  local 10.20.0.2 eth0 c1", "  peer 10.20.0.4 via 192.168.77.13", "  vtep 192.168.77.13"}},
	}
	for _, s := range steps {
		s.do()
		if diff := cmp.Diff(s.want, render(h.d.desired())); diff != "" {
			t.Fatalf("%s: desired state (-want +got):\n%s", s.name, diff)
		}
	}

	// A restart rebuilds the same desired state from the state file alone, with the controller down.
	h.stop()
	ctl.mu.Lock()
	ctl.down = true
	ctl.mu.Unlock()
	d2, err := New(h.d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(render(h.d.desired()), render(d2.desired())); diff != "" {
		t.Fatalf("desired state after restart (-before +after):\n%s", diff)
	}
}

func TestControllerDownFailsFastAndKeepsNames(t *testing.T) {
	ctl := newFakeController()
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	ctx := context.Background()
	if _, err := h.d.Networks(ctx); err != nil {
		t.Fatal(err)
	}
	ctl.mu.Lock()
	ctl.down = true
	ctl.mu.Unlock()
	start := time.Now()
	_, err := h.d.Attach(ctx, driver.AttachRequest{Network: "front", Container: "c1", Netns: "/run/ov/netns/c1"})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "controller cannot be reached") || !strings.Contains(err.Error(), "bridge, host and none") {
		t.Fatalf("Attach with the controller down = %v, want ErrUnavailable naming the controller", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Attach took %v with the controller down; it must fail fast", took)
	}
	nets, err := h.d.Networks(ctx)
	if err != nil || len(nets) != 1 || nets[0].Name != "front" {
		t.Fatalf("Networks with the controller down = %v, %v; want the last known list", nets, err)
	}
	if len(ctl.held()) != 0 {
		t.Fatalf("addresses held after a failed attach: %v", ctl.held())
	}
}

func TestFailedProgrammingReleasesAndDetachReleases(t *testing.T) {
	ctl := newFakeController()
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	ctx := context.Background()
	dataplaneLinks := h.d.links
	h.d.links = func(string) ([]string, error) { return []string{"lo"}, nil } // the interface never appears
	h.dp.fail = errors.New("netlink: operation not permitted")
	if _, err := h.d.Attach(ctx, driver.AttachRequest{Network: "front", Container: "c1", Netns: "/ns/c1"}); err == nil {
		t.Fatal("Attach succeeded although the data plane failed")
	}
	if got := ctl.held(); len(got) != 0 {
		t.Fatalf("address leaked after a failed attach: %v", got)
	}
	if got := render(h.d.desired()); len(got) != 0 {
		t.Fatalf("desired state keeps the failed endpoint: %v", got)
	}

	h.dp.fail = nil
	h.d.links = dataplaneLinks
	h.nsLinks["/ns/c2"] = []string{"eth0"}
	ep, err := h.d.Attach(ctx, driver.AttachRequest{Network: "front", Container: "c2", Netns: "/ns/c2"})
	if err != nil {
		t.Fatal(err)
	}
	if ep.Interface != "eth1" {
		t.Fatalf("interface %q, want eth1 (eth0 is taken in the namespace)", ep.Interface)
	}
	if err := h.d.Detach(ctx, "front", "c2"); err != nil {
		t.Fatal(err)
	}
	if got := ctl.held(); len(got) != 0 {
		t.Fatalf("address held after detach: %v", got)
	}
	if err := h.d.Detach(ctx, "front", "c2"); err != nil {
		t.Fatalf("second detach: %v", err)
	}
}

func TestRejoinUsesHostTokenAndReportsEndpoints(t *testing.T) {
	ctl := newFakeController()
	path := filepath.Join(t.TempDir(), "overlay.json")
	h := newHarness(t, ctl, path)
	if _, err := h.d.Attach(context.Background(), driver.AttachRequest{Network: "front", Container: "c1", Netns: "/ns/c1"}); err != nil {
		t.Fatal(err)
	}
	h.stop()
	ctl.mu.Lock()
	ctl.reports, ctl.tokens = nil, nil
	ctl.mu.Unlock()
	newHarness(t, ctl, path)
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if len(ctl.tokens) == 0 || ctl.tokens[0] != "ovh.host1" {
		t.Fatalf("restarted agent used tokens %v, want the host token first", ctl.tokens)
	}
	if len(ctl.reports) != 1 || len(ctl.reports[0]) != 1 || ctl.reports[0][0].Container != "c1" || ctl.reports[0][0].IP != "10.20.0.2" {
		t.Fatalf("reconcile reports %v, want exactly c1 with 10.20.0.2", ctl.reports)
	}
}

// TestRemovedHostRejoinsAndReclaims: a host removed from the cluster while its agent runs (ovctl node
// rm) joins again and claims the addresses of its running containers before anyone else gets them.
func TestRemovedHostRejoinsAndReclaims(t *testing.T) {
	ctl := newFakeController()
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	if _, err := h.d.Attach(context.Background(), driver.AttachRequest{Network: "front", Container: "c1", Netns: "/ns/c1"}); err != nil {
		t.Fatal(err)
	}
	ctl.mu.Lock()
	delete(ctl.hosts, "host1")
	ctl.endpoints = map[string]api.Endpoint{}
	ctl.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := ctl.held(); len(got) != 1 || got[0] != "front/host1/c1=10.20.0.2" {
			return fmt.Errorf("held after the host was removed: %v, want c1's address claimed again", got)
		}
		return nil
	})
}

// TestSubnetOverlappingAHostRouteIsRefused: a host refuses to serve an overlay network whose subnet
// overlaps one of its routes, before allocating anything; ov's own overlay gateways do not count.
func TestSubnetOverlappingAHostRouteIsRefused(t *testing.T) {
	ctl := newFakeController()
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	h.d.routes = func() ([]netlink.Route, error) {
		return []netlink.Route{
			{Dst: netip.MustParsePrefix("10.20.0.0/24"), Dev: "ovgw-4096"}, // ov's own: fine
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "eth0"},         // a default route: fine
			{Dst: netip.MustParsePrefix("10.0.0.0/8"), Dev: "wg0"},
		}, nil
	}
	_, err := h.d.Attach(context.Background(), driver.AttachRequest{Network: "front", Container: "c1", Netns: "/ns/c1"})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "10.0.0.0/8 via wg0") || !strings.Contains(err.Error(), "--subnet") {
		t.Fatalf("Attach with an overlapping host route = %v, want a conflict naming the route and the fix", err)
	}
	if got := ctl.held(); len(got) != 0 {
		t.Fatalf("addresses allocated although the host refused the network: %v", got)
	}
}
