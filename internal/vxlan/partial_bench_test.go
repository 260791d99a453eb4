package vxlan_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/vxlan"
	vnl "github.com/vishvananda/netlink"
)

// bigState is a host serving nets networks of peers remote endpoints each (on 300 other hosts), one
// local container in each.
func bigState(nl *netlink.Fake, nets, peers int) vxlan.State {
	var s vxlan.State
	addr := func(n, i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(n), byte(i >> 8), byte(i)}) }
	for n := 1; n <= nets; n++ {
		ns := fmt.Sprintf("/b%d", n)
		nl.AddNamespace(ns)
		st := vxlan.NetworkState{
			Network:   vxlan.Network{Name: fmt.Sprintf("n%02d", n), VNI: uint32(1000 + n), Subnet: netip.PrefixFrom(addr(n, 0), 16), Gateway: addr(n, 1)},
			Endpoints: []vxlan.Endpoint{{ContainerID: fmt.Sprint("c", n), NetNSPath: ns, IfName: "eth0", IP: addr(n, 2)}},
		}
		for i := range peers {
			st.Peers = append(st.Peers, vxlan.Peer{IP: addr(n, 10+i), VTEP: netip.AddrFrom4([4]byte{192, 168, 78 + byte(i%300/200), byte(1 + i%300%200)})})
		}
		s.Networks = append(s.Networks, st)
	}
	return s
}

// BenchmarkNewPeer: the reconcile one new (or gone) peer costs a host serving 19 networks of 3,000
// peers each (57,000 peers): the whole state (a Kick) against the network alone (KickNetwork). The
// fake kernel's tables are maps, so this is ov's own work; a real kernel adds the dump of the
// tables compared (every network's, or one).
func BenchmarkNewPeer(b *testing.B) {
	for _, mode := range []string{"full", "network"} {
		b.Run(mode, func(b *testing.B) {
			nl := netlink.NewFake()
			if err := nl.AddLink("", &vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: "eth0", MTU: 1500}}, "192.168.77.1/16"); err != nil {
				b.Fatal(err)
			}
			cfg := vxlan.DefaultConfig()
			cfg.LocalIP, cfg.IPForward, cfg.Netlink, cfg.IPTables = netip.MustParseAddr("192.168.77.1"), false, nl, iptables.NewFake()
			d, err := vxlan.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			s := bigState(nl, 19, 3000)
			if err := d.Reconcile(ctx, s); err != nil {
				b.Fatal(err)
			}
			base := s.Networks[0].Peers
			extra := vxlan.Peer{IP: netip.MustParseAddr("10.1.200.1"), VTEP: base[0].VTEP}
			b.ResetTimer()
			for i := range b.N {
				ns := s.Networks[0]
				if i%2 == 0 {
					ns.Peers = append(base[:len(base):len(base)], extra)
				} else {
					ns.Peers = base
				}
				st := vxlan.State{Networks: append([]vxlan.NetworkState{ns}, s.Networks[1:]...)}
				if mode == "full" {
					err = vxlan.ReconcileKicked(ctx, d, st)
				} else {
					err = vxlan.ReconcileNetworks(ctx, d, []string{ns.Network.Name}, vxlan.State{Networks: []vxlan.NetworkState{ns}})
				}
				if err != nil {
					b.Fatal(err)
				}
				if n := vxlan.LastChanges(d); n != 2 {
					b.Fatalf("%d changes, want 2 (the peer's neighbour and FDB entries)", n)
				}
			}
		})
	}
}
