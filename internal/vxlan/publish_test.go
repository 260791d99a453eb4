package vxlan_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/vxlan"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func noLocalnet(c *vxlan.Config) { c.RouteLocalnet = false } // the fakes have no sysctls

// publishLines are the rules of the iptables render that published ports make, or that they change.
func publishLines(ipt *iptables.Fake) []string {
	var out []string
	for _, l := range strings.Split(iptables.MaskIDs(ipt.String()), "\n") {
		if strings.Contains(l, "OV-OVERLAY-DNAT") || strings.Contains(l, "ctstate DNAT") || strings.Contains(l, "-i docker0 -o ovgw+") ||
			strings.Contains(l, "127.0.0.0/8") {
			out = append(out, l)
		}
	}
	return out
}

func withPorts(e vxlan.Endpoint, ps ...vxlan.Port) vxlan.Endpoint {
	e.Ports = ps
	return e
}

var (
	web   = vxlan.Port{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}
	dns   = vxlan.Port{HostIP: a("192.168.77.1"), HostPort: 5353, ContainerPort: 53, Proto: "udp"}
	local = vxlan.Port{HostIP: a("127.0.0.1"), HostPort: 9000, ContainerPort: 90, Proto: "tcp"}
)

// TestPublishRules: the rules of the published ports, state by state, with the fakes.
func TestPublishRules(t *testing.T) {
	const (
		jumps = `:OV-OVERLAY-DNAT -
-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "ov:OV-OVERLAY-DNAT:#" -j OV-OVERLAY-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment "ov:OV-OVERLAY-DNAT:#" -j OV-OVERLAY-DNAT
`
		bridges = `-A OV-OVERLAY-FWD -i docker0 -o ovgw+ -m comment --comment "ov:OV-OVERLAY-FWD:#" -j DROP
`
		webRules = `-A OV-OVERLAY-DNAT -p tcp -m tcp --dport 8080 -m comment --comment "ov:OV-OVERLAY-DNAT:#" -j DNAT --to-destination 10.1.0.2:80
-A OV-OVERLAY-NAT -s 10.1.0.0/24 -d 10.1.0.2/32 -o ovgw-100 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -m comment --comment "ov:OV-OVERLAY-NAT:#" -j MASQUERADE
-A OV-OVERLAY-NAT -s 127.0.0.0/8 -o ovgw-100 -m comment --comment "ov:OV-OVERLAY-NAT:#" -j MASQUERADE
`
		webFwd = `-A OV-OVERLAY-FWD ! -i ovgw+ -d 10.1.0.2/32 -o ovgw-100 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
-A OV-OVERLAY-FWD -i ovgw-100 -d 10.1.0.2/32 -o ovgw-100 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
`
	)
	cases := []struct {
		name  string
		state vxlan.State
		want  string // the lines publishLines keeps, in the order of the render (nat before filter)
	}{
		{name: "no ports: no chain, no rule", state: vxlan.State{Networks: []vxlan.NetworkState{{Network: front, Endpoints: []vxlan.Endpoint{c1}}}}},
		{
			name:  "8080:80 on every address",
			state: vxlan.State{Networks: []vxlan.NetworkState{{Network: front, Endpoints: []vxlan.Endpoint{withPorts(c1, web)}}}},
			want:  jumps + webRules + bridges + webFwd,
		},
		{
			name:  "a host address and udp; a loopback address",
			state: vxlan.State{Networks: []vxlan.NetworkState{{Network: front, Endpoints: []vxlan.Endpoint{withPorts(c1, dns), withPorts(c3, local)}}}},
			want: jumps + `-A OV-OVERLAY-DNAT -d 192.168.77.1/32 -p udp -m udp --dport 5353 -m comment --comment "ov:OV-OVERLAY-DNAT:#" -j DNAT --to-destination 10.1.0.2:53
-A OV-OVERLAY-DNAT -d 127.0.0.1/32 -p tcp -m tcp --dport 9000 -m comment --comment "ov:OV-OVERLAY-DNAT:#" -j DNAT --to-destination 10.1.0.5:90
-A OV-OVERLAY-NAT -s 10.1.0.0/24 -d 10.1.0.2/32 -o ovgw-100 -p udp -m udp --dport 53 -m conntrack --ctstate DNAT -m comment --comment "ov:OV-OVERLAY-NAT:#" -j MASQUERADE
-A OV-OVERLAY-NAT -s 10.1.0.0/24 -d 10.1.0.5/32 -o ovgw-100 -p tcp -m tcp --dport 90 -m conntrack --ctstate DNAT -m comment --comment "ov:OV-OVERLAY-NAT:#" -j MASQUERADE
-A OV-OVERLAY-NAT -s 127.0.0.0/8 -o ovgw-100 -m comment --comment "ov:OV-OVERLAY-NAT:#" -j MASQUERADE
` + bridges + `-A OV-OVERLAY-FWD ! -i ovgw+ -d 10.1.0.2/32 -o ovgw-100 -p udp -m udp --dport 53 -m conntrack --ctstate DNAT -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
-A OV-OVERLAY-FWD -i ovgw-100 -d 10.1.0.2/32 -o ovgw-100 -p udp -m udp --dport 53 -m conntrack --ctstate DNAT -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
-A OV-OVERLAY-FWD ! -i ovgw+ -d 10.1.0.5/32 -o ovgw-100 -p tcp -m tcp --dport 90 -m conntrack --ctstate DNAT -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
-A OV-OVERLAY-FWD -i ovgw-100 -d 10.1.0.5/32 -o ovgw-100 -p tcp -m tcp --dport 90 -m conntrack --ctstate DNAT -m comment --comment "ov:OV-OVERLAY-FWD:#" -j ACCEPT
`,
		},
		{
			name:  "two containers on one host port: the first in order only",
			state: vxlan.State{Networks: []vxlan.NetworkState{{Network: front, Endpoints: []vxlan.Endpoint{withPorts(c1, web), withPorts(c3, web)}}}},
			want:  jumps + webRules + bridges + webFwd,
		},
		{
			name: "an internal network publishes nothing",
			state: vxlan.State{Networks: []vxlan.NetworkState{
				{Network: back, Endpoints: []vxlan.Endpoint{withPorts(c2, web)}},
			}},
		},
		{
			name:  "invalid ports are left out",
			state: vxlan.State{Networks: []vxlan.NetworkState{{Network: front, Endpoints: []vxlan.Endpoint{withPorts(c1, vxlan.Port{HostPort: 80, ContainerPort: 80, Proto: "sctp"}, vxlan.Port{ContainerPort: 80, Proto: "tcp"})}}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 1500, noLocalnet)
			ctx := context.Background()
			if err := w.d.Reconcile(ctx, tc.state); err != nil {
				t.Fatal(err)
			}
			want := strings.Split(strings.TrimSuffix(tc.want, "\n"), "\n")
			if tc.want == "" {
				want = nil
			}
			if diff := cmp.Diff(want, publishLines(w.ipt)); diff != "" {
				t.Errorf("published-port rules (-want +got):\n%s", diff)
			}
			// Idempotent: a second reconcile (an agent restarted) changes nothing, so no rule is doubled.
			first := w.render()
			if err := w.d.Reconcile(ctx, tc.state); err != nil {
				t.Fatal(err)
			}
			if n := vxlan.LastChanges(w.d); n != 0 || w.render() != first {
				t.Errorf("second reconcile made %d changes", n)
			}
		})
	}
}

// TestPublishCleanup: when the container that publishes goes, its rules go and the rules are those of
// a host that never published anything; its connection-tracking entries are flushed, others kept.
func TestPublishCleanup(t *testing.T) {
	ctx := context.Background()
	without := vxlan.State{Networks: []vxlan.NetworkState{{Network: front, Endpoints: []vxlan.Endpoint{c3}}}}
	ref := newWorld(t, 1500, noLocalnet)
	if err := ref.d.Reconcile(ctx, without); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, 1500, noLocalnet)
	with := vxlan.State{Networks: []vxlan.NetworkState{{Network: front, Endpoints: []vxlan.Endpoint{withPorts(c1, web, dns), c3}}}}
	if err := w.d.Reconcile(ctx, with); err != nil {
		t.Fatal(err)
	}
	if len(publishLines(w.ipt)) == 0 {
		t.Fatal("no published-port rules after the first reconcile")
	}
	for _, ip := range []netip.Addr{c1.IP, c3.IP} {
		w.nl.AddConntrack("", flowOf(ip))
	}
	if err := w.d.Reconcile(ctx, without); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(iptables.MaskIDs(ref.ipt.String()), iptables.MaskIDs(w.ipt.String())); diff != "" {
		t.Errorf("rules after the publishing container left, against a host where it never was (-want +got):\n%s", diff)
	}
	var left []string
	for _, f := range w.nl.Conntrack("") {
		left = append(left, f.Forward.SrcIP.String())
	}
	if diff := cmp.Diff([]string{c3.IP.String()}, left); diff != "" {
		t.Errorf("conntrack entries left (sources) (-want +got):\n%s", diff)
	}
}

func flowOf(ip netip.Addr) *vnl.ConntrackFlow {
	peer := net.IP{198, 51, 100, 7}
	return &vnl.ConntrackFlow{FamilyType: unix.AF_INET,
		Forward: vnl.IPTuple{SrcIP: ip.AsSlice(), DstIP: peer, Protocol: unix.IPPROTO_UDP, SrcPort: 53, DstPort: 4000},
		Reverse: vnl.IPTuple{SrcIP: peer, DstIP: ip.AsSlice(), Protocol: unix.IPPROTO_UDP, SrcPort: 4000, DstPort: 53}}
}
