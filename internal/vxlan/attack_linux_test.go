package vxlan_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
	"github.com/ovnet/ov/internal/vxlan"
	"github.com/ovnet/ov/internal/vxlan/vxlantest"
	vnl "github.com/vishvananda/netlink"
)

// listener counts the UDP datagrams a container receives, by payload.
type listener struct {
	mu  sync.Mutex
	got map[string]int
}

func listen(t *testing.T, ct *container, port int) *listener {
	t.Helper()
	l := &listener{got: map[string]int{}}
	var pc net.PacketConn
	if err := vxlantest.InNetns(ct.path, func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", ct.ip, port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.got[string(buf[:n])]++
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *listener) count(payload string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[payload]
}

// rxPackets reads the RX packet counter of a container's interface.
func rxPackets(t *testing.T, ct *container) uint64 {
	t.Helper()
	var n uint64
	if err := vxlantest.InNetns(ct.path, func() error {
		l, err := vnl.LinkByName("eth0")
		if err != nil {
			return err
		}
		n = l.Attrs().Statistics.RxPackets
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// quiet turns IPv6 off in a namespace, so that no router solicitation or MLD report crosses the
// overlay and moves the interface counters the attack tests read.
func quiet(t *testing.T, ns string) {
	t.Helper()
	for _, k := range []string{"all", "default"} {
		sh(t, ns, "sysctl", "-qw", "net.ipv6.conf."+k+".disable_ipv6=1")
	}
}

// The VXLAN ingress filter, attacked. Network A (VNI 100) is served by hosts 0 and 1, network B
// (VNI 200, internal) by hosts 0 and 2. The target is b0, a container of B on host 0; every attack
// sends VXLAN frames crafted for it (VNI 200, its MAC and IP, a UDP datagram to a listener in it):
//   - from a container (root with NET_RAW) spoofing the outer source of host 2, a member serving B:
//     to its own gateways and its host's underlay address, and through another member host;
//   - from a `--network host` process on host 1, a member that shares A with host 0 but not B, and
//     from one on host 0 itself forging host 2's address;
//   - from a namespace on the underlay that is not a member.
//
// None reaches b0 (its listener and its RX counter do not move), while the same crafted frame sent by
// host 2 arrives and real traffic keeps flowing on both networks.
func TestLabVXLANIngressAttacks(t *testing.T) {
	lab, ds := newLab(t, 3, 1500)
	A := vxlan.Network{Name: "A", VNI: 100, Subnet: pfx("10.1.0.0/24"), Gateway: a("10.1.0.1")}
	B := vxlan.Network{Name: "B", VNI: 200, Subnet: pfx("10.2.0.0/24"), Gateway: a("10.2.0.1"), Internal: true}
	c := &cluster{lab: lab}
	a0 := c.add(t, "a0", 0, A, "10.1.0.2")
	a1 := c.add(t, "a1", 1, A, "10.1.0.3")
	b0 := c.add(t, "b0", 0, B, "10.2.0.2")
	b2 := c.add(t, "b2", 2, B, "10.2.0.3")
	rogue, err := lab.AddHost("rogue", a("192.168.77.99"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range lab.Hosts {
		quiet(t, h.Name)
	}
	for _, ct := range c.containers {
		quiet(t, lab.Prefix+ct.id)
	}
	c.reconcileAll(t, ds)
	h0, h1, h2 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]

	const port = 9999
	l := listen(t, b0, port)
	craft := func(src, dst netip.Addr, payload string) []byte {
		return vxlantest.Crafted{
			OuterSrc: src, OuterDst: dst, Port: 4789, VNI: B.VNI,
			InnerDstMAC: vxlan.MACFromIP(b0.ip), InnerSrc: a("10.2.0.99"), InnerDst: b0.ip, InnerPort: port,
			Payload: []byte(payload),
		}.Bytes()
	}
	realTraffic := func(t *testing.T) {
		t.Helper()
		for _, p := range [][2]*container{{a1, a0}, {b2, b0}} {
			if err := reachable(t, p[0], p[1].ip, 1400); err != nil {
				t.Errorf("real traffic %s -> %s: %v", p[0].id, p[1].id, err)
			}
		}
	}

	t.Run("control: the crafted frame from host 2, which serves B, reaches b0", func(t *testing.T) {
		if err := vxlantest.SendRaw(h2.Path, craft(h2.Addr, h0.Addr, "control")); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, func() error {
			if l.count("control") == 0 {
				return errors.New("the listener in b0 got nothing: the packet builder or the overlay is broken")
			}
			return nil
		})
		realTraffic(t)
	})

	for _, tc := range []struct {
		name     string
		from     string // namespace the attacker runs in
		src, dst netip.Addr
	}{
		{"container spoofing a member's VTEP, to its gateway", a0.path, h2.Addr, A.Gateway},
		{"container spoofing a member's VTEP, to the gateway of another network", a0.path, h2.Addr, B.Gateway},
		{"container spoofing a member's VTEP, to its host's underlay address", a0.path, h2.Addr, h0.Addr},
		{"container on another member spoofing a member's VTEP, through its host", a1.path, h2.Addr, h0.Addr},
		{"--network host process on a member, for a VNI that member does not serve", h1.Path, h1.Addr, h0.Addr},
		{"--network host process on the target host, spoofing a member's VTEP", h0.Path, h2.Addr, h0.Addr},
		{"non-member on the underlay", rogue.Path, rogue.Addr, h0.Addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := "attack " + tc.name
			before := rxPackets(t, b0)
			var pkts [][]byte
			for range 5 {
				pkts = append(pkts, craft(tc.src, tc.dst, payload))
			}
			if err := vxlantest.SendRaw(tc.from, pkts...); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			if n := l.count(payload); n != 0 {
				t.Errorf("b0's listener received %d of the 5 crafted frames", n)
			}
			if d := rxPackets(t, b0) - before; d != 0 {
				t.Errorf("b0's eth0 received %d packets during the attack; want 0", d)
			}
			realTraffic(t)
		})
	}
	if t.Failed() {
		for _, h := range []vxlantest.Host{h0, h1} {
			t.Logf("%s:\n%s\n%s", h.Name, sh(t, h.Name, "iptables-save", "-c", "-t", "raw"), sh(t, h.Name, "iptables-save", "-c", "-t", "filter"))
		}
	}
}

// Fail closed, against the kernel: on a host whose iptables cannot install the filter (its raw table
// is missing), the network does not come up, no VXLAN device, gateway or container interface exists,
// and the error names what is missing. With a working iptables, the same state comes up and works.
func TestLabFilterNotInstalledNoDevice(t *testing.T) {
	lab, ds := newLab(t, 2, 1500)
	n := vxlan.Network{Name: "n", VNI: 4545, Subnet: pfx("10.5.0.0/24"), Gateway: a("10.5.0.1")}
	c := &cluster{lab: lab}
	A := c.add(t, "A", 0, n, "10.5.0.2")
	B := c.add(t, "B", 1, n, "10.5.0.3")
	h0 := lab.Hosts[0]
	real, err := vxlan.NewIPTables(h0.Path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := vxlan.DefaultConfig()
	cfg.HostNetns, cfg.LocalIP, cfg.IPTables = h0.Path, h0.Addr, noRaw{real}
	broken, err := vxlan.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = broken.Reconcile(context.Background(), c.stateFor(0))
	if err == nil || !strings.Contains(err.Error(), "VXLAN ingress filter") || !strings.Contains(err.Error(), "table `raw': Table does not exist") {
		t.Fatalf("reconcile with an iptables lacking the raw table: %v; want an error naming the filter and the raw table", err)
	}
	if got := sh(t, h0.Name, "ip", "-o", "link", "show"); strings.Contains(got, "ovvx-") || strings.Contains(got, "ovgw-") {
		t.Errorf("host 0 brought devices up without their filter:\n%s", got)
	}
	if out := sh(t, lab.Prefix+"A", "ip", "-o", "link", "show"); strings.Contains(out, "eth0") {
		t.Errorf("container A got its interface without the filter:\n%s", out)
	}
	c.reconcileAll(t, ds)
	if err := reachable(t, A, B.ip, 84); err != nil {
		t.Fatalf("with a working iptables: %v", err)
	}
}
