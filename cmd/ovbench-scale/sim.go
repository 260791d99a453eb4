package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/driver/overlay"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/membership"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/vxlan"
)

// tracker tells when every host of a set has set (or deleted) the neighbour entry of one address in
// its fake kernel: the probes' "it reached every serving host" moment.
type tracker struct {
	active atomic.Int32 // addresses tracked: the fast path of every kernel write when 0
	mu     sync.Mutex
	sets   map[netip.Addr]*pending
	dels   map[netip.Addr]*pending
}

type pending struct {
	want map[string]bool // hosts that have not yet done it
	done chan struct{}   // closed when want is empty
	last time.Time       // when the last host did it
}

func newTracker() *tracker {
	return &tracker{sets: map[netip.Addr]*pending{}, dels: map[netip.Addr]*pending{}}
}

// expect starts tracking ip (set: added, else deleted) on hosts.
func (t *tracker) expect(set bool, ip netip.Addr, hosts []string) *pending {
	p := &pending{want: map[string]bool{}, done: make(chan struct{})}
	for _, h := range hosts {
		p.want[h] = true
	}
	if len(hosts) == 0 {
		p.last = time.Now()
		close(p.done)
		return p
	}
	t.mu.Lock()
	if set {
		t.sets[ip] = p
	} else {
		t.dels[ip] = p
	}
	t.mu.Unlock()
	t.active.Add(1)
	return p
}

func (t *tracker) saw(set bool, ip net4, host string) {
	if t.active.Load() == 0 {
		return
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return
	}
	a = a.Unmap()
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.dels
	if set {
		m = t.sets
	}
	p := m[a]
	if p == nil || !p.want[host] {
		return
	}
	delete(p.want, host)
	if len(p.want) == 0 {
		p.last = now
		close(p.done)
		delete(m, a)
		t.active.Add(-1)
	}
}

type net4 = []byte

// probeNL is a host's fake kernel (internal/netlink's Fake) with the tracker listening to its
// neighbour writes in the host namespace.
type probeNL struct {
	*netlink.Fake
	host string
	t    *tracker
}

func (p probeNL) Handle(path string) (netlink.Handle, error) {
	h, err := p.Fake.Handle(path)
	if err != nil || path != "" {
		return h, err
	}
	return probeHandle{Handle: h, p: p}, nil
}

type probeHandle struct {
	netlink.Handle
	p probeNL
}

func (h probeHandle) NeighSet(n *vnl.Neigh) error {
	err := h.Handle.NeighSet(n)
	if err == nil && n.Family == unix.AF_INET {
		h.p.t.saw(true, n.IP, h.p.host)
	}
	return err
}

func (h probeHandle) NeighDel(n *vnl.Neigh) error {
	err := h.Handle.NeighDel(n)
	if err == nil && n.Family == unix.AF_INET {
		h.p.t.saw(false, n.IP, h.p.host)
	}
	return err
}

// gossip is the simulated membership every simulated host shares: one view of who is alive, changed
// for all at once. Real memberlist takes its detection time (probe, suspicion, dissemination) before
// any host believes a death; the simulator adds that bound to what it measures (see deadHost).
type gossip struct {
	mu   sync.RWMutex
	view []membership.Member
	subs []chan struct{}
}

func (g *gossip) add(name string, addr netip.Addr) *simMembers {
	g.mu.Lock()
	defer g.mu.Unlock()
	view := append(append([]membership.Member(nil), g.view...), membership.Member{Name: name, Addr: netip.AddrPortFrom(addr, 7946), VTEP: addr, Alive: true, Agent: true})
	g.view = view
	m := &simMembers{g: g, ch: make(chan struct{}, 1)}
	g.subs = append(g.subs, m.ch)
	return m
}

// kill makes every host see name dead at once.
func (g *gossip) kill(name string) {
	g.mu.Lock()
	view := append([]membership.Member(nil), g.view...)
	for i := range view {
		if view[i].Name == name {
			view[i].Alive, view[i].Agent = false, false
		}
	}
	g.view = view
	subs := g.subs
	g.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// simMembers is one host's overlay.Members.
type simMembers struct {
	g  *gossip
	ch chan struct{}
}

func (m *simMembers) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (m *simMembers) Members() []membership.Member {
	m.g.mu.RLock()
	defer m.g.mu.RUnlock()
	return m.g.view
}
func (m *simMembers) Changes() <-chan struct{}         { return m.ch }
func (m *simMembers) SetHosts(hosts []membership.Host) {}
func (m *simMembers) SetKeyring(keys [][]byte) error   { return nil }

var _ overlay.Members = (*simMembers)(nil)

// countingCtl counts the endpoint watch events the controller sends a host.
type countingCtl struct {
	*client.Client
	events *atomic.Int64
}

func (c countingCtl) WatchEndpoints(ctx context.Context, network string, fromRev int64, fn func(api.EndpointEvent) error) error {
	return c.Client.WatchEndpoints(ctx, network, fromRev, func(ev api.EndpointEvent) error {
		if ev.Type != api.EventProgress {
			c.events.Add(1)
		}
		return fn(ev)
	})
}

// WatchHost counts the events of the host's one stream of every network it serves (the agent's watch).
func (c countingCtl) WatchHost(ctx context.Context, revs map[string]int64, fn func(string, api.EndpointEvent) error) error {
	return c.Client.WatchHost(ctx, revs, func(network string, ev api.EndpointEvent) error {
		if ev.Type != api.EventProgress {
			c.events.Add(1)
		}
		return fn(network, ev)
	})
}

// simHost is one simulated host: the real overlay driver (registration, heartbeat, endpoint watches,
// desired state, the vxlan reconciler) on a fake kernel and fake iptables, with simulated gossip.
type simHost struct {
	idx    int
	name   string
	addr   netip.Addr
	nl     probeNL
	drv    *overlay.Driver
	cancel context.CancelFunc
	done   chan struct{}
}

func hostAddr(i int) netip.Addr {
	n := i + 1
	return netip.AddrFrom4([4]byte{172, byte(16 + n>>16), byte(n >> 8), byte(n)})
}

func hostName(i int) string { return fmt.Sprintf("h%04d", i) }

func newHost(i int, dir, url string, t *tracker, g *gossip, events *atomic.Int64, log *slog.Logger) (*simHost, error) {
	h := &simHost{idx: i, name: hostName(i), addr: hostAddr(i)}
	fake := netlink.NewFake()
	if err := fake.AddLink("", &vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: "eth0", MTU: 1500}}, h.addr.String()+"/12"); err != nil {
		return nil, err
	}
	h.nl = probeNL{Fake: fake, host: h.name, t: t}
	vc := vxlan.DefaultConfig()
	vc.LocalIP, vc.IPForward, vc.Watch, vc.UnderlayMTU = h.addr, false, false, 1500
	vc.Netlink, vc.IPTables, vc.Logger = h.nl, iptables.NewFake(), log
	dp, err := vxlan.New(vc)
	if err != nil {
		return nil, err
	}
	hdir := filepath.Join(dir, "hosts", h.name)
	if err := os.MkdirAll(hdir, 0o700); err != nil {
		return nil, err
	}
	cfg := overlay.Config{
		Host: h.name, Address: h.addr, StatePath: filepath.Join(hdir, "overlay.json"),
		JoinToken: joinToken, Dataplane: dp, Members: g.add(h.name, h.addr), Netlink: h.nl,
		RequestTimeout: 60 * time.Second, Log: log,
		Connect: func(token string) overlay.Controller {
			c, err := client.New(client.Config{URL: url, Token: token, MaxConns: 4})
			if err != nil {
				panic(err) // the URL was checked when the admin client was made
			}
			return countingCtl{Client: c, events: events}
		},
	}
	if h.drv, err = overlay.New(cfg); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *simHost) start(ctx context.Context) {
	ctx, h.cancel = context.WithCancel(ctx)
	h.done = make(chan struct{})
	go func() { defer close(h.done); _ = h.drv.Run(ctx) }()
}

func (h *simHost) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

// neighbours counts the neighbour (ARP) entries of the host's fake kernel: one per remote peer.
func (h *simHost) neighbours() int {
	hd, err := h.nl.Fake.Handle("")
	if err != nil {
		return -1
	}
	defer hd.Close()
	ns, err := hd.NeighList(0, unix.AF_INET)
	if err != nil {
		return -1
	}
	return len(ns)
}
