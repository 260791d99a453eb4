package vxlan_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ovnet/ov/internal/testutil"
	"github.com/ovnet/ov/internal/vxlan"
	"github.com/ovnet/ov/internal/vxlan/vxlantest"
)

// container is a local endpoint placed on a lab host.
type container struct {
	id   string
	host int // index in lab.Hosts
	net  vxlan.Network
	ip   netip.Addr
	path string
}

// cluster is what the controller would know: hosts and containers. stateFor computes each host's
// desired State from it, as the agent integration will.
type cluster struct {
	lab        *vxlantest.Lab
	containers []*container
}

func (c *cluster) stateFor(host int) vxlan.State {
	byVNI := map[uint32]*vxlan.NetworkState{}
	var order []uint32
	for _, ct := range c.containers {
		ns := byVNI[ct.net.VNI]
		if ns == nil {
			ns = &vxlan.NetworkState{Network: ct.net}
			byVNI[ct.net.VNI] = ns
			order = append(order, ct.net.VNI)
		}
		vtep := c.lab.Hosts[ct.host].Addr
		if !slices.Contains(ns.VTEPs, vtep) {
			ns.VTEPs = append(ns.VTEPs, vtep)
		}
		if ct.host == host {
			ns.Endpoints = append(ns.Endpoints, vxlan.Endpoint{ContainerID: ct.id, NetNSPath: ct.path, IfName: "eth0", IP: ct.ip})
		} else {
			ns.Peers = append(ns.Peers, vxlan.Peer{IP: ct.ip, VTEP: vtep})
		}
	}
	var s vxlan.State
	for _, v := range order {
		s.Networks = append(s.Networks, *byVNI[v])
	}
	return s
}

func newLab(t *testing.T, hosts, mtu int) (*vxlantest.Lab, []*vxlan.Driver) {
	t.Helper()
	testutil.RequireRoot(t)
	lab, err := vxlantest.NewLab(testutil.UniqueName("ovx"), mtu)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	var ds []*vxlan.Driver
	for i := range hosts {
		h, err := lab.AddHost(fmt.Sprintf("h%d", i), netip.AddrFrom4([4]byte{192, 168, 77, byte(10 + i)}))
		if err != nil {
			t.Fatal(err)
		}
		// Like a host where Docker runs: FORWARD policy DROP, bridged frames through iptables.
		for _, args := range [][]string{{"iptables", "-P", "FORWARD", "DROP"}, {"sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"}} {
			if out, err := testutil.InNetns(h.Name, args[0], args[1:]...); err != nil {
				t.Fatalf("%v: %v %s", args, err, out)
			}
		}
		cfg := vxlan.DefaultConfig()
		cfg.HostNetns = h.Path
		cfg.LocalIP = h.Addr
		cfg.Resync = 200 * time.Millisecond
		cfg.MinBackoff = 50 * time.Millisecond
		d, err := vxlan.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	return lab, ds
}

func (c *cluster) add(t *testing.T, id string, host int, n vxlan.Network, ip string) *container {
	t.Helper()
	path, err := c.lab.NewNetns(id)
	if err != nil {
		t.Fatal(err)
	}
	ct := &container{id: id, host: host, net: n, ip: netip.MustParseAddr(ip), path: path}
	c.containers = append(c.containers, ct)
	return ct
}

func (c *cluster) remove(ct *container) {
	c.containers = slices.DeleteFunc(c.containers, func(o *container) bool { return o == ct })
}

func (c *cluster) reconcileAll(t *testing.T, ds []*vxlan.Driver) {
	t.Helper()
	for i, d := range ds {
		if err := d.Reconcile(context.Background(), c.stateFor(i)); err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
	}
}

func reachable(t *testing.T, from *container, to netip.Addr, size int) error {
	t.Helper()
	var err error
	for range 3 {
		if err = vxlantest.Ping(from.path, to, size, 2*time.Second); err == nil {
			return nil
		}
	}
	return err
}

func sh(t *testing.T, ns string, name string, args ...string) string {
	t.Helper()
	out, err := testutil.InNetns(ns, name, args...)
	if err != nil {
		t.Fatalf("%s %v in %s: %v\n%s", name, args, ns, err, out)
	}
	return out
}

// ovEntries returns the FDB entries with a dst and the neighbour entries of a VXLAN device, as text.
func ovEntries(t *testing.T, host, dev string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(sh(t, host, "bridge", "fdb", "show", "dev", dev), "\n") {
		if strings.Contains(l, " dst ") {
			out = append(out, "fdb "+strings.TrimSpace(l))
		}
	}
	for _, l := range strings.Split(sh(t, host, "ip", "neigh", "show", "dev", dev), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, "neigh "+l)
		}
	}
	slices.Sort(out)
	return out
}

func tcpHello(t *testing.T, server, client *container) error {
	t.Helper()
	_, err := tcpHelloFrom(t, server, client)
	return err
}

// tcpHelloFrom exchanges a line over TCP from client to server and returns the client address the
// server saw.
func tcpHelloFrom(t *testing.T, server, client *container) (netip.Addr, error) {
	t.Helper()
	var seen netip.Addr
	var ln net.Listener
	if err := vxlantest.InNetns(server.path, func() (err error) {
		ln, err = net.Listen("tcp4", server.ip.String()+":5000")
		return err
	}); err != nil {
		return seen, err
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer conn.Close()
		seen = conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		fmt.Fprint(conn, "echo "+line)
		got <- line
	}()
	var conn net.Conn
	if err := vxlantest.InNetns(client.path, func() (err error) {
		conn, err = net.DialTimeout("tcp4", server.ip.String()+":5000", 5*time.Second)
		return err
	}); err != nil {
		return seen, fmt.Errorf("dial %s from %s: %w", server.ip, client.id, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "hello\n")
	reply, err := io.ReadAll(conn)
	if err != nil || string(reply) != "echo hello\n" || <-got != "hello\n" {
		return seen, fmt.Errorf("TCP exchange %s -> %s: reply %q, %v", client.id, server.id, reply, err)
	}
	return seen, nil
}

func dropCount(t *testing.T, host string) int {
	t.Helper()
	out := sh(t, host, "iptables", "-L", vxlan.ChainInput, "-v", "-x", "-n")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && f[2] == "DROP" {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	t.Fatalf("no DROP rule in %s:\n%s", vxlan.ChainInput, out)
	return 0
}

func ovObjects(t *testing.T, host string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(sh(t, host, "ip", "-o", "link", "show"), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], "ov") {
			found = append(found, f[1])
		}
	}
	for _, table := range []string{"filter", "nat"} {
		for _, l := range strings.Split(sh(t, host, "iptables", "-t", table, "-S"), "\n") {
			if strings.Contains(l, "OV-") {
				found = append(found, l)
			}
		}
	}
	return strings.Join(found, "\n")
}

func TestLabOverlay(t *testing.T) {
	lab, ds := newLab(t, 3, 1500)
	front := vxlan.Network{Name: "front", VNI: 100, Subnet: pfx("10.1.0.0/24"), Gateway: a("10.1.0.1")}
	back := vxlan.Network{Name: "back", VNI: 200, Subnet: pfx("10.2.0.0/24"), Gateway: a("10.2.0.1")}
	secret := vxlan.Network{Name: "secret", VNI: 300, Subnet: pfx("10.3.0.0/24"), Gateway: a("10.3.0.1"), Internal: true}
	c := &cluster{lab: lab}
	A := c.add(t, "A", 0, front, "10.1.0.2")
	B := c.add(t, "B", 1, front, "10.1.0.3")
	C := c.add(t, "C", 2, back, "10.2.0.2")
	D := c.add(t, "D", 0, back, "10.2.0.3")
	E := c.add(t, "E", 0, secret, "10.3.0.2")
	c.reconcileAll(t, ds)
	h0, h1 := lab.Hosts[0], lab.Hosts[1]

	t.Run("same network across hosts: ping and TCP", func(t *testing.T) {
		if err := reachable(t, A, B.ip, 84); err != nil {
			t.Fatal(err)
		}
		if err := reachable(t, B, A.ip, 84); err != nil {
			t.Fatal(err)
		}
		if err := tcpHello(t, B, A); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("other networks cannot reach them", func(t *testing.T) {
		for _, p := range []struct {
			from *container
			to   netip.Addr
		}{{A, C.ip}, {A, D.ip}, {D, A.ip}, {C, B.ip}, {D, B.ip}} {
			if err := vxlantest.Ping(p.from.path, p.to, 84, time.Second); err == nil {
				t.Errorf("%s (%s) reached %s on another network", p.from.id, p.from.net.Name, p.to)
			}
		}
		if err := reachable(t, D, C.ip, 84); err != nil {
			t.Errorf("control: D cannot reach C on its own network: %v", err)
		}
	})
	t.Run("outbound through the local gateway is masqueraded; internal networks stay inside", func(t *testing.T) {
		// The underlay address of host 2 stands for "outside" for containers on host 0.
		outside := &container{id: "outside", path: lab.Hosts[2].Path, ip: lab.Hosts[2].Addr}
		seen, err := tcpHelloFrom(t, outside, A)
		if err != nil {
			t.Fatal(err)
		}
		if seen != h0.Addr {
			t.Errorf("outside saw the connection from %s, want host 0's address %s (MASQUERADE)", seen, h0.Addr)
		}
		if err := vxlantest.Ping(E.path, outside.ip, 84, time.Second); err == nil {
			t.Error("E on the internal network reached the outside")
		}
		if err := vxlantest.Ping(A.path, E.ip, 84, time.Second); err == nil {
			t.Error("A reached E on the internal network")
		}
	})
	t.Run("NoTrack: no conntrack entries for the tunnel and within the network, outbound tracked", func(t *testing.T) {
		if err := tcpHello(t, B, A); err != nil {
			t.Fatal(err)
		}
		ct := sh(t, h0.Name, "cat", "/proc/net/nf_conntrack")
		for _, bad := range []string{"dport=4789", "src=10.1.0.2 dst=10.1.0.3"} {
			if strings.Contains(ct, bad) {
				t.Errorf("host 0 tracks %q:\n%s", bad, ct)
			}
		}
		if !strings.Contains(ct, "src=10.1.0.2 dst=192.168.77.12") {
			t.Errorf("host 0 does not track the masqueraded outbound connection:\n%s", ct)
		}
	})
	t.Run("learning off, proxy on, no group", func(t *testing.T) {
		out := sh(t, h0.Name, "ip", "-d", "link", "show", "ovvx-100")
		for _, want := range []string{"vxlan id 100 local 192.168.77.10", "dstport 4789", "nolearning", "proxy", "mtu 1450"} {
			if !strings.Contains(out, want) {
				t.Errorf("ip -d link show ovvx-100 lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "master") {
			t.Errorf("vxlan device is enslaved:\n%s", out)
		}
		gw := sh(t, h0.Name, "ip", "-d", "addr", "show", "ovgw-100")
		for _, want := range []string{"ovgw-100@ovvx-100", "macvlan mode bridge", "mtu 1450", "inet 10.1.0.1/24"} {
			if !strings.Contains(gw, want) {
				t.Errorf("ip -d addr show ovgw-100 lacks %q:\n%s", want, gw)
			}
		}
		if regexp.MustCompile(`vxlan id .* group `).MatchString(out) {
			t.Errorf("vxlan device has a multicast group:\n%s", out)
		}
	})
	t.Run("entries are exactly the remote endpoints and other VTEPs", func(t *testing.T) {
		want := []string{
			"fdb 00:00:00:00:00:00 dst 192.168.77.11 self permanent",
			"fdb 02:42:0a:01:00:03 dst 192.168.77.11 self permanent",
			"neigh 10.1.0.3 lladdr 02:42:0a:01:00:03 PERMANENT",
		}
		if diff := cmp.Diff(want, ovEntries(t, h0.Name, "ovvx-100")); diff != "" {
			t.Errorf("host 0 ovvx-100 entries (-want +got):\n%s", diff)
		}
	})
	t.Run("MTU: exactly the MTU with DF crosses, one byte more does not", func(t *testing.T) {
		if err := reachable(t, A, B.ip, 1450); err != nil {
			t.Fatalf("1450-byte DF packet: %v", err)
		}
		if err := vxlantest.Ping(A.path, B.ip, 1451, time.Second); err == nil {
			t.Fatal("1451-byte DF packet crossed an overlay of MTU 1450")
		}
	})
	t.Run("second reconcile changes nothing, also from a new driver (agent restart)", func(t *testing.T) {
		for i, d := range ds {
			if err := d.Reconcile(context.Background(), c.stateFor(i)); err != nil {
				t.Fatal(err)
			}
			if n := vxlan.LastChanges(d); n != 0 {
				t.Errorf("host %d: second reconcile made %d changes", i, n)
			}
			cfg := vxlan.DefaultConfig()
			cfg.HostNetns, cfg.LocalIP = lab.Hosts[i].Path, lab.Hosts[i].Addr
			fresh, err := vxlan.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := fresh.Reconcile(context.Background(), c.stateFor(i)); err != nil {
				t.Fatal(err)
			}
			if n := vxlan.LastChanges(fresh); n != 0 {
				t.Errorf("host %d: a new driver's first reconcile of an unchanged state made %d changes", i, n)
			}
		}
	})
	t.Run("VXLAN from an unknown underlay address is dropped", func(t *testing.T) {
		rogue, err := lab.AddHost("rogue", a("192.168.77.99"))
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"link", "add", "vx", "type", "vxlan", "id", "100", "dstport", "4789", "local", "192.168.77.99", "nolearning"},
			{"addr", "add", "10.1.0.99/24", "dev", "vx"},
			{"link", "set", "vx", "up"},
			{"neigh", "add", "10.1.0.3", "lladdr", "02:42:0a:01:00:03", "dev", "vx", "nud", "permanent"},
		} {
			sh(t, rogue.Name, "ip", args...)
		}
		sh(t, rogue.Name, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx", "dst", "192.168.77.11")
		sh(t, rogue.Name, "bridge", "fdb", "append", "02:42:0a:01:00:03", "dev", "vx", "dst", "192.168.77.11")
		before := dropCount(t, h1.Name)
		for range 3 {
			_ = vxlantest.Ping(rogue.Path, B.ip, 84, 500*time.Millisecond)
		}
		if after := dropCount(t, h1.Name); after < before+3 {
			t.Errorf("host 1 dropped %d VXLAN packets from the rogue address, want >= 3", after-before)
		}
	})
	for _, tc := range []struct {
		name   string
		watch  bool
		resync time.Duration
	}{
		{"periodic resync", false, 200 * time.Millisecond},
		{"kernel notifications, no resync", true, time.Hour},
	} {
		t.Run("entry or device deleted by hand comes back: "+tc.name, func(t *testing.T) {
			cfg := vxlan.DefaultConfig()
			cfg.HostNetns, cfg.LocalIP, cfg.Watch, cfg.Resync = h0.Path, h0.Addr, tc.watch, tc.resync
			d, err := vxlan.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- d.Run(ctx, func() vxlan.State { return c.stateFor(0) }) }()
			defer func() { cancel(); <-done }()
			time.Sleep(300 * time.Millisecond) // let the first reconcile and subscriptions settle
			sh(t, h0.Name, "bridge", "fdb", "del", "02:42:0a:01:00:03", "dev", "ovvx-100", "dst", "192.168.77.11", "self")
			sh(t, h0.Name, "ip", "neigh", "del", "10.1.0.3", "dev", "ovvx-100")
			testutil.Eventually(t, 20*time.Second, func() error {
				if got := ovEntries(t, h0.Name, "ovvx-100"); len(got) != 3 {
					return fmt.Errorf("entries: %v", got)
				}
				return nil
			})
			sh(t, h0.Name, "ip", "link", "del", "ovvx-100")
			testutil.Eventually(t, 20*time.Second, func() error { return vxlantest.Ping(A.path, B.ip, 84, time.Second) })
		})
	}
	t.Run("removing a peer removes its entries", func(t *testing.T) {
		c.remove(B)
		c.reconcileAll(t, ds)
		if got := ovEntries(t, h0.Name, "ovvx-100"); len(got) != 0 {
			t.Errorf("host 0 still has entries after B (the only remote endpoint of front) left: %v", got)
		}
		if got := ovObjects(t, h1.Name); got != "" {
			t.Errorf("host 1 served front only through B; still has:\n%s", got)
		}
	})
	t.Run("two containers on one host; one leaves the network while running and loses its interface", func(t *testing.T) {
		F := c.add(t, "F", 0, front, "10.1.0.9")
		c.reconcileAll(t, ds)
		if err := reachable(t, F, A.ip, 1450); err != nil {
			t.Fatalf("F -> A on the same host: %v", err)
		}
		c.remove(F)
		c.reconcileAll(t, ds)
		if out := sh(t, lab.Prefix+"F", "ip", "-o", "link", "show"); strings.Contains(out, "eth0") {
			t.Errorf("F left front but still has its interface:\n%s", out)
		}
		if out := sh(t, lab.Prefix+"A", "ip", "-o", "link", "show"); !strings.Contains(out, "eth0") {
			t.Errorf("A lost its interface when F left:\n%s", out)
		}
	})
	t.Run("last endpoints removed: gateways, devices, rules gone", func(t *testing.T) {
		c.remove(A)
		c.remove(D)
		c.remove(E)
		c.reconcileAll(t, ds)
		if got := ovObjects(t, h0.Name); got != "" {
			t.Errorf("host 0 has no endpoints left but still has:\n%s", got)
		}
		if got := ovObjects(t, lab.Hosts[2].Name); !strings.Contains(got, "ovgw-200") || strings.Contains(got, "ovgw-100") {
			t.Errorf("host 2 (C on back) has:\n%s", got)
		}
		c.remove(C)
		c.reconcileAll(t, ds)
		for _, h := range lab.Hosts {
			if got := ovObjects(t, h.Name); got != "" {
				t.Errorf("%s: left behind:\n%s", h.Name, got)
			}
		}
	})
}

var mtuRE = regexp.MustCompile(`mtu (\d+)`)

func TestLabJumboUnderlay(t *testing.T) {
	lab, ds := newLab(t, 2, 9000)
	n := vxlan.Network{Name: "jumbo", VNI: 4242, Subnet: pfx("10.3.0.0/24"), Gateway: a("10.3.0.1")}
	c := &cluster{lab: lab}
	A := c.add(t, "A", 0, n, "10.3.0.2")
	B := c.add(t, "B", 1, n, "10.3.0.3")
	c.reconcileAll(t, ds)
	m := mtuRE.FindStringSubmatch(sh(t, lab.Prefix+"A", "ip", "link", "show", "eth0"))
	if m == nil || m[1] != "8950" {
		t.Fatalf("endpoint MTU on a 9000-byte underlay: %v, want 8950", m)
	}
	if err := reachable(t, A, B.ip, 8950); err != nil {
		t.Fatalf("8950-byte DF packet: %v", err)
	}
	if err := vxlantest.Ping(A.path, B.ip, 8951, time.Second); err == nil {
		t.Fatal("8951-byte DF packet crossed")
	}
	for i, d := range ds {
		if err := d.Reconcile(context.Background(), vxlan.State{}); err != nil {
			t.Fatal(err)
		}
		if got := ovObjects(t, lab.Hosts[i].Name); got != "" {
			t.Errorf("host %d after teardown:\n%s", i, got)
		}
	}
	_ = exec.Command
}

// A host built by the previous design (bridge ovbr-<vni> with the gateway address, the VXLAN device
// enslaved to it, a veth pair per container) is converted by one reconcile: the bridge and the veth
// are gone, the container has a macvlan of the same name and reaches the other host.
func TestLabUpgradeFromBridgeDesign(t *testing.T) {
	lab, ds := newLab(t, 2, 1500)
	n := vxlan.Network{Name: "up", VNI: 4343, Subnet: pfx("10.4.0.0/24"), Gateway: a("10.4.0.1")}
	c := &cluster{lab: lab}
	A := c.add(t, "A", 0, n, "10.4.0.2")
	B := c.add(t, "B", 1, n, "10.4.0.3")
	h0 := lab.Hosts[0]
	for _, args := range [][]string{
		{"ip", "link", "add", "ovbr-4343", "mtu", "1450", "type", "bridge"},
		{"ip", "addr", "add", "10.4.0.1/24", "dev", "ovbr-4343"},
		{"ip", "link", "add", "ovvx-4343", "mtu", "1450", "type", "vxlan", "id", "4343", "local", h0.Addr.String(), "dstport", "4789", "nolearning", "proxy"},
		{"ip", "link", "set", "ovvx-4343", "master", "ovbr-4343", "up"},
		{"ip", "link", "add", "ovep0123456789", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", A.path, "mtu", "1450"},
		{"ip", "link", "set", "ovep0123456789", "master", "ovbr-4343", "up"},
		{"ip", "link", "set", "ovbr-4343", "up"},
	} {
		sh(t, h0.Name, args[0], args[1:]...)
	}
	c.reconcileAll(t, ds)
	got := ovObjects(t, h0.Name)
	if strings.Contains(got, "ovbr-") || strings.Contains(got, "ovep") || !strings.Contains(got, "ovgw-4343") {
		t.Errorf("host 0 after the upgrade has:\n%s", got)
	}
	if out := sh(t, lab.Prefix+"A", "ip", "-d", "link", "show", "eth0"); !strings.Contains(out, "macvlan mode bridge") {
		t.Errorf("A's eth0 is not a macvlan:\n%s", out)
	}
	if err := reachable(t, A, B.ip, 1450); err != nil {
		t.Fatalf("A -> B after the upgrade: %v", err)
	}
	for i, d := range ds {
		if err := d.Reconcile(context.Background(), vxlan.State{}); err != nil {
			t.Fatal(err)
		}
		if got := ovObjects(t, lab.Hosts[i].Name); got != "" {
			t.Errorf("host %d after teardown:\n%s", i, got)
		}
	}
}
