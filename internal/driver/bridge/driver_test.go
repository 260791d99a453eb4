package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
)

var (
	ctx      = context.Background()
	cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
)

// hostRoutes are the routes of the fake host: its uplink and a VPN that covers 172.17.0.0/16.
var hostRoutes = []netlink.Route{
	{Dst: netip.MustParsePrefix("192.0.2.0/24"), Dev: "eth0"},
	{Dst: netip.MustParsePrefix("172.17.0.0/16"), Dev: "tun0"},
}

// newFakeHost returns a fake kernel whose host namespace has an uplink eth0 (MTU 1400) carrying the
// default route, and routes (on devices of their names, made as needed).
func newFakeHost(t *testing.T, routes ...netlink.Route) *netlink.Fake {
	t.Helper()
	k := netlink.NewFake()
	h, err := k.Handle("")
	if err != nil {
		t.Fatal(err)
	}
	dev := func(name string) vnl.Link {
		l, err := netlink.FindLink(h, name)
		if err == nil && l == nil {
			if err = k.AddLink("", &vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: name, MTU: 1400}}); err == nil {
				l, err = netlink.FindLink(h, name)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if err := h.RouteAdd(&vnl.Route{LinkIndex: dev("eth0").Attrs().Index, Gw: net.IP{192, 0, 2, 1}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		dst := &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)}
		if err := h.RouteAdd(&vnl.Route{LinkIndex: dev(r.Dev).Attrs().Index, Dst: dst}); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// fakeLinks returns the host's links of type typ (veth, bridge) by name, with their MTU.
func fakeLinks(t *testing.T, k *netlink.Fake, typ string) map[string]int {
	t.Helper()
	h, err := k.Handle("")
	if err != nil {
		t.Fatal(err)
	}
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range links {
		if l.Type() == typ {
			out[l.Attrs().Name] = l.Attrs().MTU
		}
	}
	return out
}

// conntrackOf is a tracked flow from ip to a peer, as the kernel keeps it.
func conntrackOf(ip netip.Addr) *vnl.ConntrackFlow {
	peer := net.IP{198, 51, 100, 7}
	return &vnl.ConntrackFlow{FamilyType: unix.AF_INET,
		Forward: vnl.IPTuple{SrcIP: ip.AsSlice(), DstIP: peer, Protocol: unix.IPPROTO_UDP, SrcPort: 53, DstPort: 4000},
		Reverse: vnl.IPTuple{SrcIP: peer, DstIP: ip.AsSlice(), Protocol: unix.IPPROTO_UDP, SrcPort: 4000, DstPort: 53}}
}

func newTestDriver(t *testing.T, k *netlink.Fake, ipt *iptables.Fake, stateDir string) *Driver {
	t.Helper()
	cfg := DefaultConfig()
	cfg.StateDir = stateDir
	cfg.NetnsDir = "/run/ov-test/netns"
	cfg.IPTables = ipt
	cfg.Netlink = k
	cfg.Sysctl = func(name, value string) error { return nil }
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

func mustNetns(t *testing.T, d *Driver, id string) string {
	t.Helper()
	p, err := d.CreateNetns(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// render returns the fake's tables with user bridges named by their network (BR-name) so that the
// text is deterministic.
func render(d *Driver, ipt *iptables.Fake) string {
	s := iptables.MaskIDs(ipt.String())
	for _, n := range networks(d) {
		if n.Name != DefaultNetwork {
			s = strings.ReplaceAll(s, n.Bridge, "BR-"+n.Name)
		}
	}
	return s
}

const defaultOnly = `*raw
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:OV-LOOPBACK -
-A PREROUTING -m comment --comment "ov:OV-LOOPBACK:#" -j OV-LOOPBACK
-A OV-LOOPBACK ! -i lo -d 127.0.0.0/8 -m comment --comment "ov:OV-LOOPBACK:#" -j DROP
COMMIT
*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:OV-DNAT -
:OV-NAT-POSTROUTING -
-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "ov:OV-DNAT:#" -j OV-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment "ov:OV-DNAT:#" -j OV-DNAT
-A POSTROUTING -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j OV-NAT-POSTROUTING
-A OV-NAT-POSTROUTING -s 127.0.0.0/8 -o ov0 -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j MASQUERADE
-A OV-NAT-POSTROUTING -s 172.18.0.0/16 ! -o ov0 -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT
:FORWARD DROP
:OUTPUT ACCEPT
:OV-FORWARD -
:OV-ISOLATION-1 -
:OV-ISOLATION-2 -
-A FORWARD -m comment --comment "ov:OV-FORWARD:#" -j OV-FORWARD
-A FORWARD -j DOCKER-FORWARD
-A OV-FORWARD -m comment --comment "ov:OV-FORWARD:#" -j OV-ISOLATION-1
-A OV-FORWARD -o ov0 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -i ov0 -o ov0 -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -i ov0 ! -o ov0 -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-ISOLATION-1 -i ov0 ! -o ov0 -m comment --comment "ov:OV-ISOLATION-1:#" -j OV-ISOLATION-2
-A OV-ISOLATION-2 -o ov0 -m comment --comment "ov:OV-ISOLATION-2:#" -j DROP
-A OV-ISOLATION-2 -o ovgw+ -m comment --comment "ov:OV-ISOLATION-2:#" -j DROP
-A OV-ISOLATION-2 -o docker0 -m comment --comment "ov:OV-ISOLATION-2:#" -j DROP
COMMIT
`

// TestRules walks the driver through the states a user creates and compares the whole iptables
// rendering after each; the host's FORWARD policy is DROP and another program has its own rule there.
func TestRules(t *testing.T) {
	k := newFakeHost(t, hostRoutes...)
	ipt := iptables.NewFake()
	ipt.SetPolicy("filter", "FORWARD", "DROP")
	if err := ipt.Append("filter", "FORWARD", "-j", "DOCKER-FORWARD"); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	d := newTestDriver(t, k, ipt, state)
	if diff := cmp.Diff(defaultOnly, render(d, ipt)); diff != "" {
		t.Fatalf("default network (-want +got):\n%s", diff)
	}

	if _, err := d.CreateNetwork(ctx, api.Network{Name: "front", Subnet: "10.10.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateNetwork(ctx, api.Network{Name: "secret", Subnet: "10.20.0.0/24", Internal: true}); err != nil {
		t.Fatal(err)
	}
	ns := mustNetns(t, d, "c1")
	web, err := api.ParsePortSpecs([]string{"8080:80", "127.0.0.1:5353:53/udp"})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := attachEndpoint(d, driver.AttachRequest{Network: "front", Container: "c1", Netns: ns, Ports: apiPorts(web...)})
	if err != nil {
		t.Fatal(err)
	}
	if ep.IP() != netip.MustParseAddr("10.10.0.2") || ep.IfName != "eth0" || ep.MAC != "02:42:0a:0a:00:02" || !ep.DefaultRoute {
		t.Errorf("endpoint = %+v; want 10.10.0.2 on eth0 with MAC 02:42:0a:0a:00:02 and the default route", ep)
	}
	ep2, err := attachEndpoint(d, driver.AttachRequest{Network: "secret", Container: "c1", Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	if ep2.IfName != "eth1" || ep2.DefaultRoute {
		t.Errorf("second interface = %+v; want eth1 without default route", ep2)
	}
	want := `*raw
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:OV-LOOPBACK -
-A PREROUTING -m comment --comment "ov:OV-LOOPBACK:#" -j OV-LOOPBACK
-A OV-LOOPBACK ! -i lo -d 127.0.0.0/8 -m comment --comment "ov:OV-LOOPBACK:#" -j DROP
COMMIT
*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:OV-DNAT -
:OV-NAT-POSTROUTING -
-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "ov:OV-DNAT:#" -j OV-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment "ov:OV-DNAT:#" -j OV-DNAT
-A POSTROUTING -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j OV-NAT-POSTROUTING
-A OV-DNAT -p tcp -m tcp --dport 8080 -m comment --comment "ov:OV-DNAT:#" -j DNAT --to-destination 10.10.0.2:80
-A OV-DNAT -d 127.0.0.1/32 -p udp -m udp --dport 5353 -m comment --comment "ov:OV-DNAT:#" -j DNAT --to-destination 10.10.0.2:53
-A OV-NAT-POSTROUTING -s 10.10.0.2/32 -d 10.10.0.2/32 -p tcp -m tcp --dport 80 -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j MASQUERADE
-A OV-NAT-POSTROUTING -s 10.10.0.2/32 -d 10.10.0.2/32 -p udp -m udp --dport 53 -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j MASQUERADE
-A OV-NAT-POSTROUTING -s 127.0.0.0/8 -o ov0 -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j MASQUERADE
-A OV-NAT-POSTROUTING -s 172.18.0.0/16 ! -o ov0 -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j MASQUERADE
-A OV-NAT-POSTROUTING -s 127.0.0.0/8 -o BR-front -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j MASQUERADE
-A OV-NAT-POSTROUTING -s 10.10.0.0/24 ! -o BR-front -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j MASQUERADE
-A OV-NAT-POSTROUTING -s 127.0.0.0/8 -o BR-secret -m comment --comment "ov:OV-NAT-POSTROUTING:#" -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT
:FORWARD DROP
:OUTPUT ACCEPT
:OV-FORWARD -
:OV-ISOLATION-1 -
:OV-ISOLATION-2 -
-A FORWARD -m comment --comment "ov:OV-FORWARD:#" -j OV-FORWARD
-A FORWARD -j DOCKER-FORWARD
-A OV-FORWARD -m comment --comment "ov:OV-FORWARD:#" -j OV-ISOLATION-1
-A OV-FORWARD -o ov0 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -i ov0 -o ov0 -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -i ov0 ! -o ov0 -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -o BR-front -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -d 10.10.0.2/32 ! -i BR-front -o BR-front -p tcp -m tcp --dport 80 -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -d 10.10.0.2/32 ! -i BR-front -o BR-front -p udp -m udp --dport 53 -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -i BR-front -o BR-front -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -i BR-front ! -o BR-front -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -o BR-secret -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-FORWARD -i BR-secret -o BR-secret -m comment --comment "ov:OV-FORWARD:#" -j ACCEPT
-A OV-ISOLATION-1 -i ov0 ! -o ov0 -m comment --comment "ov:OV-ISOLATION-1:#" -j OV-ISOLATION-2
-A OV-ISOLATION-1 -i BR-front ! -o BR-front -m comment --comment "ov:OV-ISOLATION-1:#" -j OV-ISOLATION-2
-A OV-ISOLATION-1 ! -s 10.20.0.0/24 -o BR-secret -m comment --comment "ov:OV-ISOLATION-1:#" -j DROP
-A OV-ISOLATION-1 ! -d 10.20.0.0/24 -i BR-secret -m comment --comment "ov:OV-ISOLATION-1:#" -j DROP
-A OV-ISOLATION-2 -o ov0 -m comment --comment "ov:OV-ISOLATION-2:#" -j DROP
-A OV-ISOLATION-2 -o BR-front -m comment --comment "ov:OV-ISOLATION-2:#" -j DROP
-A OV-ISOLATION-2 -o BR-secret -m comment --comment "ov:OV-ISOLATION-2:#" -j DROP
-A OV-ISOLATION-2 -o ovgw+ -m comment --comment "ov:OV-ISOLATION-2:#" -j DROP
-A OV-ISOLATION-2 -o docker0 -m comment --comment "ov:OV-ISOLATION-2:#" -j DROP
COMMIT
`
	if diff := cmp.Diff(want, render(d, ipt)); diff != "" {
		t.Fatalf("two networks, one container (-want +got):\n%s", diff)
	}

	// Attaching again, Reconcile, and a restarted driver on the same state change nothing.
	calls := ipt.Calls
	if again, err := attachEndpoint(d, driver.AttachRequest{Network: "front", Container: "c1", Netns: ns, Ports: apiPorts(web...)}); err != nil || !cmp.Equal(again, ep, cmpNetip) {
		t.Errorf("second Attach = %+v, %v; want %+v", again, err, ep)
	}
	if err := d.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	d2 := newTestDriver(t, k, ipt, state)
	if ipt.Calls != calls {
		t.Errorf("attach again + Reconcile + restart made %d iptables changes; want 0", ipt.Calls-calls)
	}

	// Detach and delete with the restarted driver: back to the default network only.
	other := netip.MustParseAddr("10.10.0.99") // a flow of an address no endpoint has
	for _, ip := range []netip.Addr{ep.IP(), ep2.IP(), other} {
		k.AddConntrack("", conntrackOf(ip))
	}
	for _, n := range []string{"front", "secret"} {
		if err := d2.Detach(ctx, n, "c1"); err != nil {
			t.Fatal(err)
		}
		if err := d2.Detach(ctx, n, "c1"); err != nil {
			t.Errorf("second Detach: %v; want nil", err)
		}
		if err := d2.DeleteNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(defaultOnly, render(d2, ipt)); diff != "" {
		t.Errorf("after detach and delete (-want +got):\n%s", diff)
	}
	if got := k.Conntrack(""); len(got) != 1 || !got[0].Forward.SrcIP.Equal(other.AsSlice()) {
		t.Errorf("conntrack keeps %v; want only the flow of %s (those of the detached endpoints %s and %s flushed)", got, other, ep.IP(), ep2.IP())
	}
	if veths, brs := fakeLinks(t, k, "veth"), fakeLinks(t, k, "bridge"); len(veths) != 0 || len(brs) != 1 || brs["ov0"] == 0 {
		t.Errorf("kernel keeps veths %v and bridges %v; want none and ov0", veths, brs)
	}
	if err := d2.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	wantEmpty := "*filter\n:INPUT ACCEPT\n:FORWARD DROP\n:OUTPUT ACCEPT\n-A FORWARD -j DOCKER-FORWARD\nCOMMIT\n"
	if diff := cmp.Diff(wantEmpty, ipt.String()); diff != "" {
		t.Errorf("after Teardown (-want +got):\n%s", diff)
	}
}

func TestCreateNetworkErrors(t *testing.T) {
	k := newFakeHost(t, hostRoutes...)
	d := newTestDriver(t, k, iptables.NewFake(), t.TempDir())
	if n, err := d.Network(DefaultNetwork); err != nil || n.Subnet != netip.MustParsePrefix("172.18.0.0/16") || n.Bridge != "ov0" || n.MTU != 1400 {
		t.Fatalf("default network = %+v, %v; want ov0 with 172.18.0.0/16 (172.17.0.0/16 is a host route) and the uplink's MTU 1400", n, err)
	}
	if n, err := createNetwork(d, api.Network{Name: "jumbo", Subnet: "10.3.0.0/24", MTU: 9000}); err != nil || fakeLinks(t, k, "bridge")[n.Bridge] != 9000 {
		t.Errorf("network with --mtu 9000 = %+v, %v; bridge MTU %d", n, err, fakeLinks(t, k, "bridge")[n.Bridge])
	}
	if _, err := d.CreateNetwork(ctx, api.Network{Name: "back", Subnet: "10.1.2.0/24"}); err != nil {
		t.Fatal(err)
	}
	auto, err := createNetwork(d, api.Network{Name: "auto"})
	if err != nil || auto.Subnet != netip.MustParsePrefix("172.19.0.0/16") || auto.Gateway != netip.MustParseAddr("172.19.0.1") {
		t.Errorf("network without --subnet = %+v, %v; want 172.19.0.0/16 via 172.19.0.1", auto, err)
	}
	tests := []struct {
		name  string
		req   api.Network
		class error
		msg   string
	}{
		{"overlaps a network", api.Network{Name: "front", Subnet: "10.1.0.0/16"}, errdefs.ErrConflict,
			`network "front": subnet 10.1.0.0/16 overlaps network "back" (10.1.2.0/24); choose another --subnet`},
		{"overlaps a host route", api.Network{Name: "front", Subnet: "192.0.2.128/25"}, errdefs.ErrConflict,
			`network "front": subnet 192.0.2.128/25 overlaps the host's route to 192.0.2.0/24 (dev eth0); choose another --subnet`},
		{"name taken", api.Network{Name: "back", Subnet: "10.9.0.0/24"}, errdefs.ErrAlreadyExists,
			`network "back" already exists; choose another name or remove it first`},
		{"overlay", api.Network{Name: "o", Driver: "overlay"}, errdefs.ErrInvalidArgument,
			`network "o": the local driver makes bridge networks, not "overlay"`},
		{"gateway outside", api.Network{Name: "g", Subnet: "10.9.0.0/24", Gateway: "10.8.0.1"}, errdefs.ErrInvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.CreateNetwork(ctx, tt.req)
			if !errors.Is(err, tt.class) || (tt.msg != "" && err.Error() != tt.msg) {
				t.Errorf("error = %v; want %q (%v)", err, tt.msg, tt.class)
			}
		})
	}
	if err := d.DeleteNetwork(ctx, DefaultNetwork); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("deleting the default network: %v; want invalid argument", err)
	}
	if err := d.DeleteNetwork(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("deleting an unknown network: %v; want not found", err)
	}
	ns := mustNetns(t, d, "c1")
	if _, err := attachEndpoint(d, driver.AttachRequest{Network: "back", Container: "c1", Netns: ns}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, "back"); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "c1") {
		t.Errorf("deleting a network in use: %v; want conflict naming c1", err)
	}
}

func TestAttachErrors(t *testing.T) {
	k := newFakeHost(t, hostRoutes...)
	d := newTestDriver(t, k, iptables.NewFake(), t.TempDir())
	if _, err := d.CreateNetwork(ctx, api.Network{Name: "front", Subnet: "10.1.0.0/24", IPRange: "10.1.0.128/25"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateNetwork(ctx, api.Network{Name: "secret", Subnet: "10.2.0.0/24", Internal: true}); err != nil {
		t.Fatal(err)
	}
	c1, c2 := mustNetns(t, d, "c1"), mustNetns(t, d, "c2")
	p8080, _ := api.ParsePortSpec("8080:80")
	first, err := attachEndpoint(d, driver.AttachRequest{Network: "front", Container: "c1", Netns: c1, IP: "10.1.0.200", Ports: apiPorts(p8080)})
	if err != nil || first.IP() != netip.MustParseAddr("10.1.0.200") {
		t.Fatalf("static --ip: %+v, %v", first, err)
	}
	p8080udp, _ := api.ParsePortSpec("8080:80/udp")
	p8080lo, _ := api.ParsePortSpec("127.0.0.1:8080:80")
	tests := []struct {
		name  string
		req   driver.AttachRequest
		class error
		msg   string
	}{
		{"ip outside subnet", driver.AttachRequest{Network: "front", Container: "c2", Netns: c2, IP: "10.9.0.5"}, errdefs.ErrInvalidArgument,
			"address 10.9.0.5 is outside subnet 10.1.0.0/24"},
		{"ip outside ip-range", driver.AttachRequest{Network: "front", Container: "c2", Netns: c2, IP: "10.1.0.5"}, errdefs.ErrInvalidArgument,
			"outside the ip-range"},
		{"ip taken", driver.AttachRequest{Network: "front", Container: "c2", Netns: c2, IP: "10.1.0.200"}, errdefs.ErrConflict,
			"address 10.1.0.200 is already used by c1"},
		{"host port taken", driver.AttachRequest{Network: "front", Container: "c2", Netns: c2, Ports: apiPorts(p8080lo)}, errdefs.ErrConflict,
			`-p 127.0.0.1:8080:80/tcp: host port 8080/tcp is already published by container c1 (-p 8080:80/tcp on network "front"); choose another host port`},
		{"internal with ports", driver.AttachRequest{Network: "secret", Container: "c2", Netns: c2, Ports: apiPorts(p8080udp)}, errdefs.ErrInvalidArgument,
			`network "secret" is internal: it cannot publish ports (-p); use another network`},
		{"unknown network", driver.AttachRequest{Network: "nope", Container: "c2", Netns: c2}, errdefs.ErrNotFound, `network "nope" not found`},
		{"no namespace", driver.AttachRequest{Network: "front", Container: "c3", Netns: "/run/ov-test/netns/c3"}, errdefs.ErrNotFound, "network namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := attachEndpoint(d, tt.req)
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error = %v; want one containing %q (%v)", err, tt.msg, tt.class)
			}
		})
	}
	if n := len(d.Endpoints("")); n != 1 {
		t.Errorf("%d endpoints after failed attaches; want 1", n)
	}
	// The same host port over udp is another port.
	if _, err := attachEndpoint(d, driver.AttachRequest{Network: "front", Container: "c2", Netns: c2, Ports: apiPorts(p8080udp)}); err != nil {
		t.Errorf("8080/udp next to 8080/tcp: %v", err)
	}
}

// TestAddressesNotReusedAtOnce: a released address goes to the back of the queue (next-fit).
func TestAddressesNotReusedAtOnce(t *testing.T) {
	d := newTestDriver(t, newFakeHost(t), iptables.NewFake(), t.TempDir())
	if _, err := d.CreateNetwork(ctx, api.Network{Name: "n", Subnet: "10.5.0.0/29"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range []string{"a", "b", "a", "c"} {
		ns := mustNetns(t, d, c)
		e, err := attachEndpoint(d, driver.AttachRequest{Network: "n", Container: c, Netns: ns})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.IP().String())
		if c == "a" {
			if err := d.Detach(ctx, "n", "a"); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []string{"10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
}

// TestReconcileDeletesOrphanBridges: a bridge of a network the state no longer knows (crash between
// forgetting the network and deleting its bridge) is deleted; other programs' bridges are left alone.
func TestReconcileDeletesOrphanBridges(t *testing.T) {
	k := newFakeHost(t)
	for _, b := range []string{"ov-0123456789ab", "docker0", "br0", "ov-notours"} {
		if err := k.AddLink("", &vnl.Bridge{LinkAttrs: vnl.LinkAttrs{Name: b, MTU: 1500}}, "10.99.0.1/24"); err != nil {
			t.Fatal(err)
		}
	}
	d := newTestDriver(t, k, iptables.NewFake(), t.TempDir())
	n, err := createNetwork(d, api.Network{Name: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for b := range fakeLinks(t, k, "bridge") {
		got = append(got, b)
	}
	want := []string{"br0", "docker0", n.Bridge, "ov-notours", "ov0"}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("bridges after Reconcile (-want +got):\n%s", diff)
	}
}

// TestAttachRunsIptablesOnlyForRuleChanges: attaching and detaching a container without published
// ports changes no rule, so it runs no iptables at all (each run costs milliseconds on the path of
// `ovctl run`); one with published ports writes its rules, and its detach removes them; a rule deleted
// behind the driver's back is restored by the next change of the rules or by Reconcile.
func TestAttachRunsIptablesOnlyForRuleChanges(t *testing.T) {
	ipt := iptables.NewFake()
	d := newTestDriver(t, newFakeHost(t), ipt, t.TempDir())
	base := render(d, ipt)
	runs := func() int { return ipt.Calls + ipt.Reads }

	before := runs()
	ns := mustNetns(t, d, "plain")
	if _, err := attachEndpoint(d, driver.AttachRequest{Network: DefaultNetwork, Container: "plain", Netns: ns}); err != nil {
		t.Fatal(err)
	}
	if err := d.Detach(ctx, DefaultNetwork, "plain"); err != nil {
		t.Fatal(err)
	}
	if n := runs() - before; n != 0 {
		t.Errorf("attach + detach without published ports ran iptables %d times; want 0", n)
	}

	web, err := api.ParsePortSpecs([]string{"8080:80"})
	if err != nil {
		t.Fatal(err)
	}
	ns = mustNetns(t, d, "web")
	calls := ipt.Calls
	ep, err := attachEndpoint(d, driver.AttachRequest{Network: DefaultNetwork, Container: "web", Netns: ns, Ports: apiPorts(web...)})
	if err != nil {
		t.Fatal(err)
	}
	if n := ipt.Calls - calls; n != 2 {
		t.Errorf("attach with -p made %d iptables changes; want 2 (one atomic restore per table)", n)
	}
	dnat := "-A OV-DNAT -p tcp -m tcp --dport 8080 -m comment --comment \"ov:OV-DNAT:#\" -j DNAT --to-destination " + ep.IP().String() + ":80"
	if !strings.Contains(render(d, ipt), dnat) {
		t.Fatalf("after attach with -p 8080:80, no rule %q in:\n%s", dnat, render(d, ipt))
	}
	// Another program deletes one of ov's rules; the next rule change (here the detach) repairs it.
	if err := ipt.DeleteById("filter", ChainForward, 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Detach(ctx, DefaultNetwork, "web"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(base, render(d, ipt)); diff != "" {
		t.Errorf("after detach of the published container (-want +got):\n%s", diff)
	}
	// A rule removed behind the driver's back while no rule changes: Reconcile puts it back.
	if err := ipt.DeleteById("nat", ChainPostrouting, 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(base, render(d, ipt)); diff != "" {
		t.Errorf("after Reconcile (-want +got):\n%s", diff)
	}
}

// attachEndpoint attaches through the driver's edge (Attach) and returns the endpoint the driver
// recorded; it checks that Attach answered with that endpoint as the API shows it.
func attachEndpoint(d *Driver, req driver.AttachRequest) (Endpoint, error) {
	got, err := d.Attach(ctx, req)
	if err != nil {
		return Endpoint{}, err
	}
	for _, e := range d.Endpoints(req.Network) {
		if e.Container == req.Container {
			if want := e.toAPI(); !cmp.Equal(got, want) {
				return Endpoint{}, fmt.Errorf("Attach answered %+v; the driver recorded %+v", got, want)
			}
			return e, nil
		}
	}
	return Endpoint{}, fmt.Errorf("Attach succeeded but the driver has no endpoint of %s on %q", req.Container, req.Network)
}

// apiPorts is ports as the agent sends them.
func apiPorts(ports ...api.PortSpec) []api.PortMapping {
	var out []api.PortMapping
	for _, p := range ports {
		out = append(out, p.Wire())
	}
	return out
}

// networks returns the driver's networks as it keeps them, by name.
func networks(d *Driver) []Network {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Network
	for _, n := range d.sortedNetworks() {
		out = append(out, *n)
	}
	return out
}

// createNetwork creates through the driver's edge (CreateNetwork) and returns the network the driver
// recorded; it checks that CreateNetwork answered with that network as the API shows it.
func createNetwork(d *Driver, req api.Network) (Network, error) {
	got, err := d.CreateNetwork(ctx, req)
	if err != nil {
		return Network{}, err
	}
	n, err := d.Network(req.Name)
	if err != nil {
		return Network{}, err
	}
	if want := n.toAPI(); !cmp.Equal(got, want) {
		return Network{}, fmt.Errorf("CreateNetwork answered %+v; the driver recorded %+v", got, want)
	}
	return n, nil
}
