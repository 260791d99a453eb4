package bridge

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
)

// sysctls records the sysctls a driver writes, like the kernel keeps them.
type sysctls struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *sysctls) write(name, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[name] = value
	return nil
}

// localnet renders route_localnet of the bridges of d's networks, by network name.
func (s *sysctls) localnet(d *Driver) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, n := range networks(d) {
		fmt.Fprintf(&b, "%s=%s ", n.Name, s.m["net.ipv4.conf."+n.Bridge+".route_localnet"])
	}
	return strings.TrimSpace(b.String())
}

// TestRouteLocalnetFollowsPublishedPorts walks the states a user creates: route_localnet is on on a
// bridge exactly while a container of its network publishes a port that 127.0.0.1 reaches (-p
// 127.0.0.1:H:C, or -p H:C on every address), and off otherwise; a bridge left with it on (by the
// version before issue 9) is cleared by Reconcile.
func TestRouteLocalnetFollowsPublishedPorts(t *testing.T) {
	sc := &sysctls{m: map[string]string{"net.ipv4.conf.ov0.route_localnet": "1"}} // the old version's
	cfg := DefaultConfig()
	cfg.StateDir, cfg.NetnsDir = t.TempDir(), "/run/ov-test/netns"
	cfg.IPTables, cfg.Netlink, cfg.Sysctl = iptables.NewFake(), newFakeHost(t), sc.write
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"front", "back"} {
		if _, err := d.CreateNetwork(ctx, api.Network{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	attach := func(network, c string, ports ...string) error {
		pm, err := api.ParsePortSpecs(ports)
		if err != nil {
			return err
		}
		_, err = attachEndpoint(d, driver.AttachRequest{Network: network, Container: c, Netns: mustNetns(t, d, c), Ports: apiPorts(pm...)})
		return err
	}
	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"nothing published", func() error { return nil }, "back=0 bridge=0 front=0"},
		{"no ports", func() error { return attach("front", "plain") }, "back=0 bridge=0 front=0"},
		{"port on another address", func() error { return attach("back", "lan", "192.0.2.5:8081:80") }, "back=0 bridge=0 front=0"},
		{"port on every address", func() error { return attach("front", "web", "8080:80") }, "back=0 bridge=0 front=1"},
		{"port on 127.0.0.1", func() error { return attach("back", "db", "127.0.0.1:5432:5432") }, "back=1 bridge=0 front=1"},
		{"second port on 127.0.0.1", func() error { return attach("back", "dns", "127.0.0.1:5353:53/udp") }, "back=1 bridge=0 front=1"},
		{"one of two goes", func() error { return d.Detach(ctx, "back", "db") }, "back=1 bridge=0 front=1"},
		{"the last goes", func() error { return d.Detach(ctx, "back", "dns") }, "back=0 bridge=0 front=1"},
		{"port on every address goes", func() error { return d.Detach(ctx, "front", "web") }, "back=0 bridge=0 front=0"},
		{"default network", func() error { return attach(DefaultNetwork, "api", "127.0.0.1:9000:9000") }, "back=0 bridge=1 front=0"},
		{"set behind the driver's back, then Reconcile", func() error {
			_ = sc.write("net.ipv4.conf."+mustNetwork(t, d, "back").Bridge+".route_localnet", "1")
			return d.Reconcile(ctx)
		}, "back=0 bridge=1 front=0"},
		{"restarted driver", func() error {
			_ = sc.write("net.ipv4.conf.ov0.route_localnet", "0")
			d2, err := New(cfg)
			if err == nil {
				err = d2.Reconcile(ctx)
			}
			return err
		}, "back=0 bridge=1 front=0"},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := sc.localnet(d); got != s.want {
			t.Errorf("%s: route_localnet %s; want %s", s.name, got, s.want)
		}
	}
}

func mustNetwork(t *testing.T, d *Driver, name string) Network {
	t.Helper()
	n, err := d.Network(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// failingRaw is an iptables client that cannot write the raw table (no raw table in the kernel, a
// broken iptables binary, another firewall holding the lock).
type failingRaw struct {
	*iptables.Fake
	broken bool
}

func (f *failingRaw) Restore(table string, lines []string) error {
	if f.broken && table == "raw" {
		return errors.New("iptables-restore: can't initialize iptables table `raw'")
	}
	return f.Fake.Restore(table, lines)
}

// TestNoNetworkWithoutLoopbackGuard: while the loopback guard cannot be put in place, no container
// gets a namespace or an interface (an overlay container's namespace is made by CreateNetns too), the
// error says what is missing, and nothing is left behind; once iptables works, the same calls succeed
// with the guard in place.
func TestNoNetworkWithoutLoopbackGuard(t *testing.T) {
	k := newFakeHost(t)
	ipt := &failingRaw{Fake: iptables.NewFake(), broken: true}
	cfg := DefaultConfig()
	cfg.StateDir, cfg.NetnsDir = t.TempDir(), "/run/ov-test/netns"
	cfg.IPTables, cfg.Netlink, cfg.Sysctl = ipt, k, func(string, string) error { return nil }
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const msg = "cannot put in place the rules that keep containers away from the host's 127.0.0.1 (iptables raw table, chain OV-LOOPBACK)"
	if err := d.Reconcile(ctx); err == nil || !strings.Contains(err.Error(), msg) {
		t.Errorf("Reconcile without the raw table: %v; want an error containing %q", err, msg)
	}
	if links := fakeLinks(t, k, "bridge"); len(links) != 0 {
		t.Errorf("Reconcile without the guard made bridges %v; want none", links)
	}
	if _, err := d.CreateNetns(ctx, "c1"); err == nil || !strings.Contains(err.Error(), msg) {
		t.Errorf("CreateNetns without the guard: %v; want an error containing %q", err, msg)
	}
	if err := d.checkNetns(d.NetnsPath("c1")); err == nil {
		t.Errorf("CreateNetns without the guard made the namespace %s", d.NetnsPath("c1"))
	}
	// A namespace made by other means (the agent's container:NAME or a crash of an old version) gets
	// no interface either.
	k.AddNamespace("/run/ov-test/netns/c2")
	if _, err := d.Attach(ctx, driver.AttachRequest{Network: DefaultNetwork, Container: "c2", Netns: "/run/ov-test/netns/c2"}); err == nil {
		t.Errorf("Attach without the guard succeeded")
	}
	if names, _ := netlink.LinkNames(k, "/run/ov-test/netns/c2"); len(names) > 1 {
		t.Errorf("Attach without the guard left interfaces %v in the namespace", names)
	}

	ipt.broken = false
	if err := d.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	ns, err := d.CreateNetns(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attachEndpoint(d, driver.AttachRequest{Network: DefaultNetwork, Container: "c1", Netns: ns}); err != nil {
		t.Fatal(err)
	}
	want := "-A OV-LOOPBACK ! -i lo -d 127.0.0.0/8 -m comment --comment \"ov:OV-LOOPBACK:#\" -j DROP"
	if got := iptables.MaskIDs(ipt.String()); !strings.Contains(got, want) {
		t.Errorf("after iptables works again, no %q in:\n%s", want, got)
	}
	if diff := cmp.Diff([]string{"eth0", "lo"}, sorted(netlink.LinkNames(k, ns))); diff != "" {
		t.Errorf("links of the container (-want +got):\n%s", diff)
	}
}

func sorted(names []string, err error) []string {
	if err != nil {
		return []string{err.Error()}
	}
	return slices.Sorted(slices.Values(names))
}
