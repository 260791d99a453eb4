package membership

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
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

func startNode(t *testing.T, name string, vtep string, seeds []string) *node {
	t.Helper()
	return startNodeOn(t, name, vtep, freePort(t), seeds)
}

func startNodeOn(t *testing.T, name string, vtep string, port int, seeds []string) *node {
	t.Helper()
	cfg := DefaultConfig(name, netip.MustParseAddr("127.0.0.1"))
	cfg.Port = port
	cfg.VTEP = netip.MustParseAddr(vtep)
	cfg.ProbeInterval = 200 * time.Millisecond
	cfg.ProbeTimeout = 100 * time.Millisecond
	cfg.RejoinInterval = 200 * time.Millisecond
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	m.SetSeeds(seeds)
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
	a := startNode(t, "host1", "192.0.2.1", nil)
	b := startNode(t, "host2", "192.0.2.2", []string{a.m.Addr()})
	c := startNode(t, "host3", "192.0.2.3", []string{a.m.Addr()})
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
	c2 := startNodeOn(t, "host3", "192.0.2.3", c.m.cfg.Port, []string{a.m.Addr()})
	for _, n := range []*node{a, b, c2} {
		testutil.Eventually(t, 15*time.Second, func() error { return expect(n.m, all) })
	}
}

func TestSeedsHealAfterEveryoneRestarts(t *testing.T) {
	a := startNode(t, "host1", "192.0.2.1", nil)
	b := startNode(t, "host2", "192.0.2.2", nil)
	// Neither knows the other until seeds arrive (as from the controller's host list).
	a.m.SetSeeds([]string{b.m.Addr()})
	want := map[string]string{"host1": "alive vtep=192.0.2.1", "host2": "alive vtep=192.0.2.2"}
	testutil.Eventually(t, 10*time.Second, func() error { return expect(b.m, want) })
	testutil.Eventually(t, 10*time.Second, func() error { return expect(a.m, want) })
}

func TestLeaveIsNotAlive(t *testing.T) {
	a := startNode(t, "host1", "192.0.2.1", nil)
	b := startNode(t, "host2", "192.0.2.2", []string{a.m.Addr()})
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
