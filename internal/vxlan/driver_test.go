package vxlan_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/testutil"
	"github.com/ovnet/ov/internal/vxlan"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

type world struct {
	nl  *netlink.Fake
	ipt *iptables.Fake
	d   *vxlan.Driver
}

func newWorld(t *testing.T, underlayMTU int, opts ...func(*vxlan.Config)) *world {
	t.Helper()
	w := &world{nl: netlink.NewFake(), ipt: iptables.NewFake()}
	eth := &vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: "eth0", MTU: underlayMTU}}
	if err := w.nl.AddLink("", eth, "192.168.77.1/24"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"/c1", "/c2", "/c3"} {
		w.nl.AddNamespace(c)
	}
	cfg := vxlan.DefaultConfig()
	cfg.LocalIP = netip.MustParseAddr("192.168.77.1")
	cfg.IPForward = false // the fakes have no sysctls
	cfg.IsolateFrom = []string{"docker0"}
	cfg.Netlink = w.nl
	cfg.IPTables = w.ipt
	for _, o := range opts {
		o(&cfg)
	}
	d, err := vxlan.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.d = d
	return w
}

// render is the whole observable state: host namespace, containers, iptables.
func (w *world) render() string {
	var b strings.Builder
	for _, ns := range []string{"", "/c1", "/c2", "/c3"} {
		b.WriteString("# netns " + ns + "\n" + w.nl.Render(ns))
	}
	b.WriteString("# iptables\n" + iptables.MaskIDs(w.ipt.String()))
	return b.String()
}

var (
	a   = netip.MustParseAddr
	pfx = netip.MustParsePrefix
)

var (
	front = vxlan.Network{Name: "front", VNI: 100, Subnet: pfx("10.1.0.0/24"), Gateway: a("10.1.0.1")}
	back  = vxlan.Network{Name: "back", VNI: 200, Subnet: pfx("10.2.0.0/24"), Gateway: a("10.2.0.1"), MTU: 1400, Internal: true}
	c1    = vxlan.Endpoint{ContainerID: "c1", NetNSPath: "/c1", IfName: "eth0", IP: a("10.1.0.2")}
	c2    = vxlan.Endpoint{ContainerID: "c2", NetNSPath: "/c2", IfName: "eth0", IP: a("10.2.0.2")}
	c3    = vxlan.Endpoint{ContainerID: "c3", NetNSPath: "/c3", IfName: "eth1", IP: a("10.1.0.5")}
	pB    = vxlan.Peer{IP: a("10.1.0.3"), VTEP: a("192.168.77.2")}
	pC    = vxlan.Peer{IP: a("10.1.0.4"), VTEP: a("192.168.77.3")}
	pBack = vxlan.Peer{IP: a("10.2.0.9"), VTEP: a("192.168.77.3")}
)

const emptyHost = `# netns 
addr eth0 192.168.77.1/24
link eth0 device mtu=1500
# netns /c1

# netns /c2

# netns /c3

`

const emptyIPT = `# iptables
`

var states = []struct {
	name  string
	state vxlan.State
	want  string
}{
	{name: "empty", state: vxlan.State{}, want: emptyHost + emptyIPT},
	{
		name: "one network, one local endpoint, one remote peer",
		state: vxlan.State{Networks: []vxlan.NetworkState{{
			Network: front, Endpoints: []vxlan.Endpoint{c1}, Peers: []vxlan.Peer{pB},
			VTEPs: []netip.Addr{a("192.168.77.1"), a("192.168.77.2")},
		}}},
		want: `# netns 
addr eth0 192.168.77.1/24
addr ovgw-100 10.1.0.1/24
fdb ovvx-100 00:00:00:00:00:00 dst 192.168.77.2 flags=0x2 state=0x80
fdb ovvx-100 02:42:0a:01:00:03 dst 192.168.77.2 flags=0x2 state=0x80
link eth0 device mtu=1500
link ovgw-100 macvlan mtu=1450 up mac=6e:04:3f:10:82:20 parent=ovvx-100@"" mode=bridge
link ovvx-100 vxlan mtu=1450 up vni=100 local=192.168.77.1 port=4789 learning=false proxy=true
neigh ovvx-100 10.1.0.3 lladdr 02:42:0a:01:00:03 flags=0x0 state=0x80
# netns /c1
addr eth0 10.1.0.2/24
link eth0 macvlan mtu=1450 up mac=02:42:0a:01:00:02 parent=ovvx-100@"" mode=bridge
route default via 10.1.0.1 dev eth0
# netns /c2

# netns /c3

# iptables
*raw
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:OV-OVERLAY-GUARD -
:OV-OVERLAY-RAW -
-A PREROUTING -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j OV-OVERLAY-GUARD
-A OUTPUT -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-RAW:#" -j OV-OVERLAY-RAW
-A OV-OVERLAY-GUARD ! -i eth0 -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j DROP
-A OV-OVERLAY-GUARD -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j NOTRACK
-A OV-OVERLAY-RAW -m comment --comment "ov:OV-OVERLAY-RAW:#" -j NOTRACK
COMMIT
*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:OV-OVERLAY-NAT -
-A POSTROUTING -m comment --comment "ov:OV-OVERLAY-NAT:#" -j OV-OVERLAY-NAT
-A OV-OVERLAY-NAT -s 10.1.0.0/24 ! -o ovgw-100 -m comment --comment "ov:OV-OVERLAY-NAT:#" -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
:OV-OVERLAY-FWD -
:OV-OVERLAY-IN -
-A INPUT -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-IN:#" -j OV-OVERLAY-IN
-A FORWARD -m comment --comment "ov:OV-OVERLAY-FWD:#" -j OV-OVERLAY-FWD
-A OV-OVERLAY-FWD -o ovgw+ -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
-A OV-OVERLAY-FWD -i ovgw+ -o ovgw+ -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-FWD -i ovgw-100 -o docker0 -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-FWD -i ovgw-100 -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
-A OV-OVERLAY-FWD -o ovgw+ -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-IN -s 192.168.77.2/32 -d 192.168.77.1/32 -i eth0 -m comment --comment "ov:OV-OVERLAY-IN:#" -j ACCEPT
-A OV-OVERLAY-IN -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-IN:#" -j DROP
COMMIT
`,
	},
	{
		name: "two networks, one internal with its own MTU",
		state: vxlan.State{Networks: []vxlan.NetworkState{{
			Network: front, Endpoints: []vxlan.Endpoint{c1, c3}, Peers: []vxlan.Peer{pB, pC},
			VTEPs: []netip.Addr{a("192.168.77.2"), a("192.168.77.3")},
		}, {
			Network: back, Endpoints: []vxlan.Endpoint{c2}, Peers: []vxlan.Peer{pBack},
		}}},
		want: `# netns 
addr eth0 192.168.77.1/24
addr ovgw-100 10.1.0.1/24
addr ovgw-200 10.2.0.1/24
fdb ovvx-100 00:00:00:00:00:00 dst 192.168.77.2 flags=0x2 state=0x80
fdb ovvx-100 00:00:00:00:00:00 dst 192.168.77.3 flags=0x2 state=0x80
fdb ovvx-100 02:42:0a:01:00:03 dst 192.168.77.2 flags=0x2 state=0x80
fdb ovvx-100 02:42:0a:01:00:04 dst 192.168.77.3 flags=0x2 state=0x80
fdb ovvx-200 00:00:00:00:00:00 dst 192.168.77.3 flags=0x2 state=0x80
fdb ovvx-200 02:42:0a:02:00:09 dst 192.168.77.3 flags=0x2 state=0x80
link eth0 device mtu=1500
link ovgw-100 macvlan mtu=1450 up mac=6e:04:3f:10:82:20 parent=ovvx-100@"" mode=bridge
link ovgw-200 macvlan mtu=1400 up mac=e6:7c:1b:47:df:3f parent=ovvx-200@"" mode=bridge
link ovvx-100 vxlan mtu=1450 up vni=100 local=192.168.77.1 port=4789 learning=false proxy=true
link ovvx-200 vxlan mtu=1400 up vni=200 local=192.168.77.1 port=4789 learning=false proxy=true
neigh ovvx-100 10.1.0.3 lladdr 02:42:0a:01:00:03 flags=0x0 state=0x80
neigh ovvx-100 10.1.0.4 lladdr 02:42:0a:01:00:04 flags=0x0 state=0x80
neigh ovvx-200 10.2.0.9 lladdr 02:42:0a:02:00:09 flags=0x0 state=0x80
# netns /c1
addr eth0 10.1.0.2/24
link eth0 macvlan mtu=1450 up mac=02:42:0a:01:00:02 parent=ovvx-100@"" mode=bridge
route default via 10.1.0.1 dev eth0
# netns /c2
addr eth0 10.2.0.2/24
link eth0 macvlan mtu=1400 up mac=02:42:0a:02:00:02 parent=ovvx-200@"" mode=bridge
# netns /c3
addr eth1 10.1.0.5/24
link eth1 macvlan mtu=1450 up mac=02:42:0a:01:00:05 parent=ovvx-100@"" mode=bridge
route default via 10.1.0.1 dev eth1
# iptables
*raw
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:OV-OVERLAY-GUARD -
:OV-OVERLAY-RAW -
-A PREROUTING -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j OV-OVERLAY-GUARD
-A OUTPUT -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-RAW:#" -j OV-OVERLAY-RAW
-A OV-OVERLAY-GUARD ! -i eth0 -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j DROP
-A OV-OVERLAY-GUARD -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j NOTRACK
-A OV-OVERLAY-RAW -m comment --comment "ov:OV-OVERLAY-RAW:#" -j NOTRACK
COMMIT
*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:OV-OVERLAY-NAT -
-A POSTROUTING -m comment --comment "ov:OV-OVERLAY-NAT:#" -j OV-OVERLAY-NAT
-A OV-OVERLAY-NAT -s 10.1.0.0/24 ! -o ovgw-100 -m comment --comment "ov:OV-OVERLAY-NAT:#" -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
:OV-OVERLAY-FWD -
:OV-OVERLAY-IN -
-A INPUT -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-IN:#" -j OV-OVERLAY-IN
-A FORWARD -m comment --comment "ov:OV-OVERLAY-FWD:#" -j OV-OVERLAY-FWD
-A OV-OVERLAY-FWD -o ovgw+ -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
-A OV-OVERLAY-FWD -i ovgw+ -o ovgw+ -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-FWD -i ovgw-100 -o docker0 -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-FWD -i ovgw-100 -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
-A OV-OVERLAY-FWD -i ovgw-200 -o docker0 -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-FWD -i ovgw-200 -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-FWD -o ovgw+ -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-IN -s 192.168.77.2/32 -d 192.168.77.1/32 -i eth0 -m u32 --u32 0x0>>0x16&0x3c@0xc>>0x8=0x64 -m comment --comment "ov:OV-OVERLAY-IN:#" -j ACCEPT
-A OV-OVERLAY-IN -s 192.168.77.3/32 -d 192.168.77.1/32 -i eth0 -m comment --comment "ov:OV-OVERLAY-IN:#" -j ACCEPT
-A OV-OVERLAY-IN -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-IN:#" -j DROP
COMMIT
`,
	},
	{
		name: "peer and endpoint gone, network without local endpoints torn down",
		state: vxlan.State{Networks: []vxlan.NetworkState{{
			Network: front, Endpoints: []vxlan.Endpoint{c3}, Peers: []vxlan.Peer{pC},
			VTEPs: []netip.Addr{a("192.168.77.3")},
		}, {
			Network: back, Peers: []vxlan.Peer{pBack},
		}}},
		want: `# netns 
addr eth0 192.168.77.1/24
addr ovgw-100 10.1.0.1/24
fdb ovvx-100 00:00:00:00:00:00 dst 192.168.77.3 flags=0x2 state=0x80
fdb ovvx-100 02:42:0a:01:00:04 dst 192.168.77.3 flags=0x2 state=0x80
link eth0 device mtu=1500
link ovgw-100 macvlan mtu=1450 up mac=6e:04:3f:10:82:20 parent=ovvx-100@"" mode=bridge
link ovvx-100 vxlan mtu=1450 up vni=100 local=192.168.77.1 port=4789 learning=false proxy=true
neigh ovvx-100 10.1.0.4 lladdr 02:42:0a:01:00:04 flags=0x0 state=0x80
# netns /c1

# netns /c2

# netns /c3
addr eth1 10.1.0.5/24
link eth1 macvlan mtu=1450 up mac=02:42:0a:01:00:05 parent=ovvx-100@"" mode=bridge
route default via 10.1.0.1 dev eth1
# iptables
*raw
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:OV-OVERLAY-GUARD -
:OV-OVERLAY-RAW -
-A PREROUTING -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j OV-OVERLAY-GUARD
-A OUTPUT -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-RAW:#" -j OV-OVERLAY-RAW
-A OV-OVERLAY-GUARD ! -i eth0 -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j DROP
-A OV-OVERLAY-GUARD -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j NOTRACK
-A OV-OVERLAY-RAW -m comment --comment "ov:OV-OVERLAY-RAW:#" -j NOTRACK
COMMIT
*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:OV-OVERLAY-NAT -
-A POSTROUTING -m comment --comment "ov:OV-OVERLAY-NAT:#" -j OV-OVERLAY-NAT
-A OV-OVERLAY-NAT -s 10.1.0.0/24 ! -o ovgw-100 -m comment --comment "ov:OV-OVERLAY-NAT:#" -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
:OV-OVERLAY-FWD -
:OV-OVERLAY-IN -
-A INPUT -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-IN:#" -j OV-OVERLAY-IN
-A FORWARD -m comment --comment "ov:OV-OVERLAY-FWD:#" -j OV-OVERLAY-FWD
-A OV-OVERLAY-FWD -o ovgw+ -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
-A OV-OVERLAY-FWD -i ovgw+ -o ovgw+ -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-FWD -i ovgw-100 -o docker0 -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-FWD -i ovgw-100 -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
-A OV-OVERLAY-FWD -o ovgw+ -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
-A OV-OVERLAY-IN -s 192.168.77.3/32 -d 192.168.77.1/32 -i eth0 -m comment --comment "ov:OV-OVERLAY-IN:#" -j ACCEPT
-A OV-OVERLAY-IN -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-IN:#" -j DROP
COMMIT
`,
	},
}

// apply reconciles st, compares the whole rendered state with want, then reconciles again and checks
// that the second run changes nothing.
func (w *world) apply(t *testing.T, st vxlan.State, want string) {
	t.Helper()
	ctx := context.Background()
	if err := w.d.Reconcile(ctx, st); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if diff := cmp.Diff(want, w.render()); diff != "" {
		t.Fatalf("state after reconcile (-want +got):\n%s", diff)
	}
	calls := w.ipt.Calls
	if err := w.d.Reconcile(ctx, st); err != nil {
		t.Fatalf("second reconcile: %v", err)
	}
	if n := vxlan.LastChanges(w.d); n != 0 || w.ipt.Calls != calls {
		t.Fatalf("second reconcile of the same state made %d kernel changes and %d iptables calls; want none", n, w.ipt.Calls-calls)
	}
	if diff := cmp.Diff(want, w.render()); diff != "" {
		t.Fatalf("state after second reconcile (-want +got):\n%s", diff)
	}
}

func TestReconcileStates(t *testing.T) {
	w := newWorld(t, 1500)
	for _, st := range states {
		t.Run(st.name, func(t *testing.T) { w.apply(t, st.state, st.want) })
	}
}

// Level-triggered: whatever state the host was in, reconciling a state gives the same result.
func TestReconcileStatesInRandomOrder(t *testing.T) {
	w := newWorld(t, 1500)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		st := states[r.IntN(len(states))]
		t.Run(fmt.Sprintf("%d %s", i, st.name), func(t *testing.T) { w.apply(t, st.state, st.want) })
	}
}

// Upgrade from the version that wrote no comments: its untagged rules and jumps are replaced, none is
// left twice.
func TestUpgradeFromUntaggedRules(t *testing.T) {
	for _, st := range states[1:] {
		t.Run(st.name, func(t *testing.T) {
			w := newWorld(t, 1500)
			w.apply(t, st.state, st.want)
			w.ipt.DropComments()
			if w.render() == st.want {
				t.Fatal("test bug: dropping the comments changed nothing")
			}
			w.apply(t, st.state, st.want)
		})
	}
}

// Upgrade from the version whose jumps into the VXLAN chains matched every packet (and whose chain
// rules tested the port themselves): its jumps and rules go, in the same transaction per table as the
// new ones come, and none is left twice.
func TestUpgradeFromUnmatchedJumps(t *testing.T) {
	for _, st := range states[1:] {
		t.Run(st.name, func(t *testing.T) {
			w := newWorld(t, 1500)
			w.apply(t, st.state, st.want)
			old := []struct{ table, chain, owner, rule string }{
				{"raw", "PREROUTING", vxlan.ChainRawGuard, "-j " + vxlan.ChainRawGuard},
				{"raw", "OUTPUT", vxlan.ChainRaw, "-j " + vxlan.ChainRaw},
				{"filter", "INPUT", vxlan.ChainInput, "-j " + vxlan.ChainInput},
				{"raw", vxlan.ChainRawGuard, vxlan.ChainRawGuard, "-p udp -m udp --dport 4789 -j NOTRACK"},
				{"raw", vxlan.ChainRaw, vxlan.ChainRaw, "-p udp -m udp --dport 4789 -j NOTRACK"},
				{"filter", vxlan.ChainInput, vxlan.ChainInput, "-s 192.168.77.9/32 -d 192.168.77.1/32 -i eth0 -p udp -m udp --dport 4789 -j ACCEPT"},
			}
			for _, o := range old {
				// Tagged as ov tags them: owner, the chain the rule is in, the rule.
				if err := w.ipt.Insert(o.table, o.chain, 1, iptables.Tag(o.owner, o.chain, iptables.Rule(o.rule)).Spec()...); err != nil {
					t.Fatal(err)
				}
			}
			if w.render() == st.want {
				t.Fatal("test bug: the old rules changed nothing")
			}
			w.apply(t, st.state, st.want)
		})
	}
}

// Whatever someone changed by hand is put back: deleted links and entries, learned and stale
// entries, wrong MTU, foreign iptables rules in ov's chains, a missing jump.
func TestReconcileRepairsDrift(t *testing.T) {
	st := states[2]
	drift := []struct {
		name   string
		break_ func(t *testing.T, w *world)
	}{
		{"vxlan device deleted", func(t *testing.T, w *world) { delLink(t, w, "", "ovvx-100") }},
		{"gateway deleted", func(t *testing.T, w *world) { delLink(t, w, "", "ovgw-200") }},
		{"container macvlan on the wrong parent", func(t *testing.T, w *world) {
			delLink(t, w, "/c1", "eth0")
			addMacvlan(t, w, "/c1", "eth0", findLink(t, w, "", "ovgw-100").Attrs().Index, vnl.MACVLAN_MODE_BRIDGE, vxlan.MACFromIP(c1.IP))
		}},
		{"container macvlan in the wrong mode, wrong MAC", func(t *testing.T, w *world) {
			delLink(t, w, "/c1", "eth0")
			addMacvlan(t, w, "/c1", "eth0", findLink(t, w, "", "ovvx-100").Attrs().Index, vnl.MACVLAN_MODE_VEPA, vxlan.MACFromIP(c3.IP))
		}},
		{"container MAC changed", func(t *testing.T, w *world) {
			h, _ := w.nl.Handle("/c3")
			must(t, h.LinkSetHardwareAddr(findLink(t, w, "/c3", "eth1"), vxlan.MACFromIP(c1.IP)))
		}},
		{"container end deleted", func(t *testing.T, w *world) { delLink(t, w, "/c3", "eth1") }},
		{"learned and stale entries", func(t *testing.T, w *world) {
			h, _ := w.nl.Handle("")
			vx := findLink(t, w, "", "ovvx-100")
			must(t, h.NeighSet(&vnl.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF, State: unix.NUD_REACHABLE,
				HardwareAddr: vxlan.MACFromIP(a("10.1.0.77")), IP: a("192.168.77.9").AsSlice()}))
			must(t, h.NeighSet(&vnl.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_INET, State: unix.NUD_REACHABLE,
				HardwareAddr: vxlan.MACFromIP(a("10.1.0.77")), IP: a("10.1.0.77").AsSlice()}))
			must(t, h.NeighDel(&vnl.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, HardwareAddr: vxlan.MACFromIP(pB.IP)}))
			must(t, h.NeighAppend(&vnl.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF, State: unix.NUD_PERMANENT,
				HardwareAddr: make([]byte, 6), IP: a("192.168.77.66").AsSlice()}))
		}},
		{"wrong MTU and address", func(t *testing.T, w *world) {
			h, _ := w.nl.Handle("/c1")
			eth := findLink(t, w, "/c1", "eth0")
			must(t, h.LinkSetMTU(eth, 1500))
			must(t, h.AddrReplace(eth, &vnl.Addr{IPNet: &net.IPNet{IP: net.IP{10, 1, 0, 99}, Mask: net.CIDRMask(24, 32)}}))
		}},
		{"foreign rule in ov chain and jump deleted", func(t *testing.T, w *world) {
			must(t, w.ipt.Insert("filter", vxlan.ChainForward, 1, "-j", "ACCEPT"))
			must(t, w.ipt.DeleteById("nat", "POSTROUTING", 1))
		}},
	}
	for _, dr := range drift {
		t.Run(dr.name, func(t *testing.T) {
			var seen []vxlan.Reconciled
			w := newWorld(t, 1500, func(c *vxlan.Config) { c.OnReconcile = func(r vxlan.Reconciled) { seen = append(seen, r) } })
			w.apply(t, st.state, st.want)
			if s := w.d.Status(); s.Changes == 0 || s.Repairs != 0 {
				t.Fatalf("after the first reconcile: %d changes, %d repairs; want some changes and no repair (a new state is no drift)", s.Changes, s.Repairs)
			}
			mark := len(seen)
			dr.break_(t, w)
			if w.render() == st.want {
				t.Fatal("test bug: breaking the state changed nothing")
			}
			w.apply(t, st.state, st.want)
			if s := w.d.Status(); s.Repairs == 0 {
				t.Fatalf("drift repaired but Status counts %d repairs (%d changes)", s.Repairs, s.Changes)
			}
			if len(seen) != mark+2 {
				t.Fatalf("OnReconcile called %d times for 2 reconciles", len(seen)-mark)
			}
			if r := seen[len(seen)-2]; r.Repairs == 0 || r.Repairs != r.Changes || r.Took <= 0 { // apply reconciles twice
				t.Fatalf("OnReconcile saw %+v; want the repairing reconcile's repairs and duration", seen)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func findLink(t *testing.T, w *world, ns, name string) vnl.Link {
	t.Helper()
	h, err := w.nl.Handle(ns)
	must(t, err)
	links, err := h.LinkList()
	must(t, err)
	for _, l := range links {
		if l.Attrs().Name == name {
			return l
		}
	}
	t.Fatalf("no link %s in %q", name, ns)
	return nil
}

// addMacvlan creates, from the host namespace, a macvlan on parent inside namespace ns.
func addMacvlan(t *testing.T, w *world, ns, name string, parent int, mode vnl.MacvlanMode, mac net.HardwareAddr) {
	t.Helper()
	h, err := w.nl.Handle("")
	must(t, err)
	fd, release, err := w.nl.Fd(ns)
	must(t, err)
	defer release()
	must(t, h.LinkAdd(&vnl.Macvlan{LinkAttrs: vnl.LinkAttrs{Name: name, MTU: 1400, HardwareAddr: mac, ParentIndex: parent, Namespace: vnl.NsFd(fd)}, Mode: mode}))
}

func delLink(t *testing.T, w *world, ns, name string) {
	t.Helper()
	h, err := w.nl.Handle(ns)
	must(t, err)
	must(t, h.LinkDel(findLink(t, w, ns, name)))
}

// Callers may list local endpoints among the peers (VTEP == LocalIP): they are ignored.
func TestLocalPeersIgnored(t *testing.T) {
	w := newWorld(t, 1500)
	st := states[1]
	ns := st.state.Networks[0]
	ns.Peers = append(slices.Clone(ns.Peers), vxlan.Peer{IP: c1.IP, VTEP: a("192.168.77.1")})
	w.apply(t, vxlan.State{Networks: []vxlan.NetworkState{ns}}, st.want)
}

// With NoTrack off, the NOTRACK chain is not made, and one left by an earlier configuration is removed;
// the guard chain of the VXLAN ingress filter stays.
func TestNoTrackOff(t *testing.T) {
	w := newWorld(t, 1500)
	w.apply(t, states[1].state, states[1].want)
	cfg := vxlan.DefaultConfig()
	cfg.LocalIP, cfg.IPForward, cfg.IsolateFrom, cfg.Netlink, cfg.IPTables = a("192.168.77.1"), false, []string{"docker0"}, w.nl, w.ipt
	cfg.NoTrack = false
	d, err := vxlan.New(cfg)
	must(t, err)
	w.d = d
	want := states[1].want
	raw := strings.Index(want, "*raw\n")
	want = want[:raw] + `*raw
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:OV-OVERLAY-GUARD -
-A PREROUTING -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j OV-OVERLAY-GUARD
-A OV-OVERLAY-GUARD ! -i eth0 -p udp -m udp --dport 4789 -m comment --comment "ov:OV-OVERLAY-GUARD:#" -j DROP
COMMIT
` + want[raw+strings.Index(want[raw:], "COMMIT\n")+len("COMMIT\n"):]
	w.apply(t, states[1].state, want)
}

func TestDerivedMTU(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		underlay, netMTU, want int
	}{
		{"standard underlay", 1500, 0, 1450},
		{"jumbo underlay", 9000, 0, 8950},
		{"network sets its own", 9000, 1400, 1400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.underlay)
			n := front
			n.MTU = tc.netMTU
			must(t, w.d.Reconcile(context.Background(), vxlan.State{Networks: []vxlan.NetworkState{{Network: n, Endpoints: []vxlan.Endpoint{c1}}}}))
			for _, l := range []struct{ ns, name string }{{"", "ovgw-100"}, {"", "ovvx-100"}, {"/c1", "eth0"}} {
				if got := findLink(t, w, l.ns, l.name).Attrs().MTU; got != tc.want {
					t.Errorf("MTU of %s = %d, want %d", l.name, got, tc.want)
				}
			}
		})
	}
}

// A container whose interface name is taken by something ov did not create gets a conflict error;
// the other endpoints are still set up.
func TestEndpointConflict(t *testing.T) {
	w := newWorld(t, 1500)
	must(t, w.nl.AddLink("/c1", &vnl.Dummy{LinkAttrs: vnl.LinkAttrs{Name: "eth0"}}))
	st := vxlan.State{Networks: []vxlan.NetworkState{{Network: front, Endpoints: []vxlan.Endpoint{c1, c3}}}}
	err := w.d.Reconcile(context.Background(), st)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "container c1") {
		t.Fatalf("reconcile with eth0 taken in c1: got %v, want a conflict naming container c1", err)
	}
	findLink(t, w, "/c3", "eth1")
	if !strings.Contains(w.nl.Render("/c1"), "link eth0 dummy") {
		t.Fatalf("the foreign eth0 of c1 was touched:\n%s", w.nl.Render("/c1"))
	}
}

func TestDefaultConfig(t *testing.T) {
	c := vxlan.DefaultConfig()
	if c.Port != 4789 || !c.Watch || !c.NoTrack || !c.IPForward || c.Resync <= 0 || c.Logger == nil || c.Netlink == nil {
		t.Fatalf("DefaultConfig() = %+v; want port 4789, Watch, NoTrack and IPForward on, a resync period, a logger and netlink", c)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*vxlan.Config)
	}{
		{"no local IP", func(c *vxlan.Config) { c.LocalIP = netip.Addr{} }},
		{"IPv6 local IP", func(c *vxlan.Config) { c.LocalIP = a("fd00::1") }},
		{"port zero", func(c *vxlan.Config) { c.Port = 0 }},
		{"tiny underlay MTU", func(c *vxlan.Config) { c.UnderlayMTU = 100 }},
		{"no resync", func(c *vxlan.Config) { c.Resync = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := vxlan.DefaultConfig()
			c.LocalIP = a("192.168.77.1")
			c.IPTables = iptables.NewFake()
			tc.mod(&c)
			if _, err := vxlan.New(c); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("New: got %v, want invalid argument", err)
			}
		})
	}
}

// Run reconciles at start and on Kick, and retries after a failure.
func TestRunKickAndRetry(t *testing.T) {
	w := newWorld(t, 1500)
	var mu sync.Mutex
	cur := states[1].state
	desired := func() vxlan.State { mu.Lock(); defer mu.Unlock(); return cur }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.d.Run(ctx, desired) }()
	wait := func(want string) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			if diff := cmp.Diff(want, w.render()); diff != "" {
				return fmt.Errorf("(-want +got):\n%s", diff)
			}
			return nil
		})
	}
	wait(states[1].want)
	// A namespace that disappears makes the reconcile fail; it is retried until it comes back.
	w.nl.DelNamespace("/c2")
	mu.Lock()
	cur = states[2].state
	mu.Unlock()
	w.d.Kick()
	time.Sleep(300 * time.Millisecond)
	w.nl.AddNamespace("/c2")
	wait(states[2].want)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
}

// countingIPT counts every iptables call, reads included.
type countingIPT struct {
	iptables.Client
	n atomic.Int64
}

func (c *countingIPT) Save(table string) (map[string][]iptables.Rule, error) {
	c.n.Add(1)
	return c.Client.Save(table)
}

func (c *countingIPT) Restore(table string, lines []string) error {
	c.n.Add(1)
	return c.Client.Restore(table, lines)
}

// A kicked reconcile programs a new peer without an iptables pass when the rules would not change
// (the pass costs tens of milliseconds of iptables execs before the peer's entries), and still
// updates the rules first when they would (a peer on a new host, whose VXLAN traffic INPUT must accept).
func TestRunKickSkipsUnchangedFirewall(t *testing.T) {
	var ipt *countingIPT
	w := newWorld(t, 1500, func(c *vxlan.Config) {
		ipt = &countingIPT{Client: c.IPTables}
		c.IPTables = ipt
		c.Resync = time.Hour
	})
	var mu sync.Mutex
	cur := states[1].state // front: c1 here, pB on 192.168.77.2
	set := func(peers ...vxlan.Peer) {
		mu.Lock()
		defer mu.Unlock()
		ns := cur.Networks[0]
		ns.Peers = peers
		cur = vxlan.State{Networks: []vxlan.NetworkState{ns}}
	}
	desired := func() vxlan.State { mu.Lock(); defer mu.Unlock(); return cur }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.d.Run(ctx, desired) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	}()
	has := func(line string) func() error {
		return func() error {
			if !strings.Contains(w.render(), line) {
				return fmt.Errorf("no %q in:\n%s", line, w.render())
			}
			return nil
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if diff := cmp.Diff(states[1].want, w.render()); diff != "" {
			return fmt.Errorf("(-want +got):\n%s", diff)
		}
		return nil
	})

	before := ipt.n.Load()
	sameHost := vxlan.Peer{IP: a("10.1.0.7"), VTEP: pB.VTEP}
	set(pB, sameHost)
	w.d.Kick()
	testutil.Eventually(t, 10*time.Second, has("neigh ovvx-100 10.1.0.7 lladdr 02:42:0a:01:00:07"))
	if n := ipt.n.Load() - before; n != 0 {
		t.Errorf("a peer on a known host cost %d iptables calls; want none", n)
	}

	newHost := vxlan.Peer{IP: a("10.1.0.8"), VTEP: a("192.168.77.9")}
	set(pB, sameHost, newHost)
	w.d.Kick()
	testutil.Eventually(t, 10*time.Second, has(`-A OV-OVERLAY-IN -s 192.168.77.9/32 -d 192.168.77.1/32 -i eth0 -m comment --comment "ov:OV-OVERLAY-IN:#" -j ACCEPT`))
	testutil.Eventually(t, 10*time.Second, has("fdb ovvx-100 02:42:0a:01:00:08 dst 192.168.77.9"))

	// Reconcile (not kicked) always checks the rules: drift is repaired at once.
	must(t, w.ipt.DeleteById("nat", "POSTROUTING", 1))
	must(t, w.d.Reconcile(ctx, desired()))
	if err := has(`-A POSTROUTING -m comment --comment "ov:OV-OVERLAY-NAT:#" -j ` + vxlan.ChainNAT)(); err != nil {
		t.Error(err)
	}
}

// A host set up by the previous design (a bridge per network, a veth pair per container, the VXLAN
// device enslaved to the bridge) converges to the macvlan design: the bridge and veths go, the
// gateway address moves to ovgw-<vni>, the container gets a macvlan of the same name.
func TestUpgradeFromBridgeDesign(t *testing.T) {
	w := newWorld(t, 1500)
	h, err := w.nl.Handle("")
	must(t, err)
	must(t, w.nl.AddLink("", &vnl.Bridge{LinkAttrs: vnl.LinkAttrs{Name: "ovbr-100", MTU: 1450}}, "10.1.0.1/24"))
	br := findLink(t, w, "", "ovbr-100")
	must(t, h.LinkAdd(&vnl.Vxlan{LinkAttrs: vnl.LinkAttrs{Name: "ovvx-100", MTU: 1450, MasterIndex: br.Attrs().Index},
		VxlanId: 100, SrcAddr: net.IP{192, 168, 77, 1}, Port: 4789, Proxy: true}))
	fd, release, err := w.nl.Fd("/c1")
	must(t, err)
	must(t, h.LinkAdd(&vnl.Veth{LinkAttrs: vnl.LinkAttrs{Name: "ovep31e607de07", MTU: 1450, MasterIndex: br.Attrs().Index},
		PeerName: "eth0", PeerNamespace: vnl.NsFd(fd), PeerHardwareAddr: vxlan.MACFromIP(c1.IP)}))
	release()
	w.apply(t, states[1].state, states[1].want)
}
