package membership

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
)

// node is one member under test, gossiping on loopback.
type node struct {
	m      *Membership
	cancel context.CancelFunc
	done   chan error
}

// freePort returns a TCP and UDP port free on loopback, so that a restarted node can come back on
// the port it had, as an agent does.
func freePort(t *testing.T) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
}

// testKey is the cluster's gossip key in these tests.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// cluster is the registered hosts of a test: each on loopback with its own port.
type cluster []Host

func newCluster(t *testing.T, names ...string) cluster {
	t.Helper()
	var c cluster
	for _, n := range names {
		c = append(c, Host{Name: n, Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(freePort(t)))})
	}
	return c
}

func (c cluster) port(name string) int {
	for _, h := range c {
		if h.Name == name {
			return int(h.Addr.Port())
		}
	}
	panic("no host " + name)
}

func startNode(t *testing.T, c cluster, name, vtep string) *node {
	t.Helper()
	return startNodeWith(t, c, name, vtep, nil)
}

// startNodeWith starts a member of cluster c with the keyring from Config (testKey) and lets mod
// change the Membership before Start (to turn a protection off).
func startNodeWith(t *testing.T, c cluster, name, vtep string, mod func(*Membership)) *node {
	t.Helper()
	cfg := DefaultConfig(name, netip.MustParseAddr("127.0.0.1"))
	cfg.Port = c.port(name)
	cfg.VTEP = netip.MustParseAddr(vtep)
	cfg.ProbeInterval = 200 * time.Millisecond
	cfg.ProbeTimeout = 100 * time.Millisecond
	cfg.RejoinInterval = 200 * time.Millisecond
	cfg.Keys = [][]byte{testKey}
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(m)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	m.SetHosts(c)
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- m.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

// stop ends gossip without leaving, as a killed or restarting agent does.
func (n *node) stop() {
	n.cancel()
	<-n.done
	n.done <- nil // keep stop idempotent
}

func view(m *Membership) map[string]string {
	out := map[string]string{}
	for _, mb := range m.Members() {
		state := "dead"
		if mb.Alive {
			state = "alive"
		}
		out[mb.Name] = fmt.Sprintf("%s vtep=%s", state, mb.VTEP)
	}
	return out
}

func expect(m *Membership, want map[string]string) error {
	got := view(m)
	for k, v := range want {
		if got[k] != v {
			return fmt.Errorf("%s sees %s as %q, want %q (all: %v)", m.cfg.Name, k, got[k], v, got)
		}
	}
	return nil
}

func TestMembersSeeEachOtherDeathAndReturn(t *testing.T) {
	cl := newCluster(t, "host1", "host2", "host3")
	a := startNode(t, cl, "host1", "192.0.2.1")
	b := startNode(t, cl, "host2", "192.0.2.2")
	c := startNode(t, cl, "host3", "192.0.2.3")
	all := map[string]string{"host1": "alive vtep=192.0.2.1", "host2": "alive vtep=192.0.2.2", "host3": "alive vtep=192.0.2.3"}
	for _, n := range []*node{a, b, c} {
		testutil.Eventually(t, 10*time.Second, func() error { return expect(n.m, all) })
	}

	// host3 dies without a word: the others declare it dead and signal a change.
	drain(a.m)
	c.stop()
	for _, n := range []*node{a, b} {
		testutil.Eventually(t, 15*time.Second, func() error {
			return expect(n.m, map[string]string{"host3": "dead vtep=192.0.2.3", "host2": "alive vtep=192.0.2.2"})
		})
	}
	select {
	case <-a.m.Changes():
	default:
		t.Fatal("no change signalled for host3's death")
	}
	if a.m.Alive("host3") {
		t.Fatal("Alive(host3) after its death")
	}

	// host3 comes back under its name and address, as after a restart, and is alive again everywhere.
	c2 := startNode(t, cl, "host3", "192.0.2.3")
	for _, n := range []*node{a, b, c2} {
		testutil.Eventually(t, 15*time.Second, func() error { return expect(n.m, all) })
	}
}

func TestSeedsHealAfterEveryoneRestarts(t *testing.T) {
	cl := newCluster(t, "host1", "host2")
	a := startNode(t, cl[:1], "host1", "192.0.2.1")
	b := startNode(t, cl[1:], "host2", "192.0.2.2")
	// Neither knows the other until the host list arrives (as from the controller).
	a.m.SetHosts(cl)
	b.m.SetHosts(cl)
	want := map[string]string{"host1": "alive vtep=192.0.2.1", "host2": "alive vtep=192.0.2.2"}
	testutil.Eventually(t, 10*time.Second, func() error { return expect(b.m, want) })
	testutil.Eventually(t, 10*time.Second, func() error { return expect(a.m, want) })
}

func TestLeaveIsNotAlive(t *testing.T) {
	cl := newCluster(t, "host1", "host2")
	a := startNode(t, cl, "host1", "192.0.2.1")
	b := startNode(t, cl, "host2", "192.0.2.2")
	testutil.Eventually(t, 10*time.Second, func() error { return expect(a.m, map[string]string{"host2": "alive vtep=192.0.2.2"}) })
	if err := b.m.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	b.stop()
	testutil.Eventually(t, 10*time.Second, func() error { return expect(a.m, map[string]string{"host2": "dead vtep=192.0.2.2"}) })
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig("host1", netip.MustParseAddr("192.0.2.1"))
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no name", func(c *Config) { c.Name = "" }},
		{"no bind address", func(c *Config) { c.BindAddr = netip.Addr{} }},
		{"no vtep", func(c *Config) { c.VTEP = netip.Addr{} }},
		{"bad port", func(c *Config) { c.Port = 70000 }},
		{"zero probe", func(c *Config) { c.ProbeInterval = 0 }},
		{"short key", func(c *Config) { c.Keys = [][]byte{[]byte("0123456789abcdef")} }},
		{"negative key grace", func(c *Config) { c.KeyGrace = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			if err := c.Validate(); err == nil {
				t.Fatal("Validate accepted a bad config")
			}
		})
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
}

func drain(m *Membership) {
	select {
	case <-m.Changes():
	default:
	}
}

// TestNoKeyringNoGossip: without a keyring gossip refuses to start and Run waits, bound to nothing,
// until SetKeyring gives one; it never gossips in clear.
func TestNoKeyringNoGossip(t *testing.T) {
	port := freePort(t)
	cfg := DefaultConfig("host1", netip.MustParseAddr("127.0.0.1"))
	cfg.Port = port
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err == nil || !strings.Contains(err.Error(), "no gossip keyring") {
		t.Fatalf("Start without a keyring = %v, want an error saying there is no keyring", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(300 * time.Millisecond)
	u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("the gossip port is bound before any keyring was given: %v", err)
	}
	u.Close()
	if err := m.SetKeyring([][]byte{[]byte("short")}); err == nil {
		t.Fatal("SetKeyring accepted a 5-byte key")
	}
	if err := m.SetKeyring([][]byte{testKey}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if m.Addr() == "" {
			return fmt.Errorf("gossip did not start once the keyring was given")
		}
		return nil
	})
}
