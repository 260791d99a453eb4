package vxlan_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/vxlan"
)

// goodState is two networks served by this host: front (c1, c3; peers on two hosts) and back (c2,
// one peer).
func goodState() vxlan.State {
	return vxlan.State{Networks: []vxlan.NetworkState{
		{Network: front, Endpoints: []vxlan.Endpoint{c1, c3}, Peers: []vxlan.Peer{pB, pC}, VTEPs: []netip.Addr{a("192.168.77.2"), a("192.168.77.3")}},
		{Network: back, Endpoints: []vxlan.Endpoint{c2}, Peers: []vxlan.Peer{pBack}},
	}}
}

// programmed is what the kernel of a host looks like after reconciling st, computed on a fresh host.
func programmed(t *testing.T, st vxlan.State) string {
	t.Helper()
	w := newWorld(t, 1500)
	must(t, w.d.Reconcile(context.Background(), st))
	return w.render()
}

type problem struct{ network, kind, entry, reason string }

func problemsOf(s vxlan.Status) []problem {
	var out []problem
	for _, n := range s.Networks {
		for _, p := range n.Problems {
			if p.Network != n.Name || p.Since.IsZero() {
				out = append(out, problem{n.Name, "BAD STATUS", p.Entry, p.Reason})
			}
			out = append(out, problem{n.Name, p.Kind, p.Entry, p.Reason})
		}
	}
	return out
}

// The issue: one duplicate address froze the host's whole overlay (Validate rejected the whole state,
// nothing converged, no container could attach). Now the two peers claiming one address are left out,
// everything else on both networks is programmed, and the conflict is logged once, counted, and shown
// in the status.
func TestDuplicatePeerAddressLeavesTheRestProgrammed(t *testing.T) {
	var logs bytes.Buffer
	w := newWorld(t, 1500, func(c *vxlan.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	dupB := vxlan.Peer{IP: a("10.1.0.9"), VTEP: a("192.168.77.2")}
	dupC := vxlan.Peer{IP: a("10.1.0.9"), VTEP: a("192.168.77.3")}
	st := goodState()
	st.Networks[0].Peers = []vxlan.Peer{pB, dupB, pC, dupC}
	ctx := context.Background()

	for range 3 { // the Run loop reconciles again and again: the problem is logged and counted once
		if err := w.d.Reconcile(ctx, st); err != nil {
			t.Fatalf("reconcile with one conflicting address: %v; want the rest programmed and no error", err)
		}
	}
	if diff := cmp.Diff(programmed(t, goodState()), w.render()); diff != "" {
		t.Fatalf("kernel state: want every entry but the two conflicting peers (-want +got):\n%s", diff)
	}
	for _, p := range []vxlan.Peer{dupB, dupC} { // and nothing of them reached the kernel
		if mac := vxlan.MACFromIP(p.IP).String(); strings.Contains(w.render(), mac) {
			t.Fatalf("an entry of the conflicting address %s (%s) is in the kernel:\n%s", p.IP, mac, w.render())
		}
	}
	s := w.d.Status()
	want := []problem{
		{"front", vxlan.KindPeer, "10.1.0.9 on 192.168.77.2", "its address 10.1.0.9 is also claimed by peer 10.1.0.9 on 192.168.77.3: none of them is programmed, so that no traffic goes to the wrong host, until the controller holds one endpoint per address (release the stale one)"},
		{"front", vxlan.KindPeer, "10.1.0.9 on 192.168.77.3", "its address 10.1.0.9 is also claimed by peer 10.1.0.9 on 192.168.77.2: none of them is programmed, so that no traffic goes to the wrong host, until the controller holds one endpoint per address (release the stale one)"},
	}
	if diff := cmp.Diff(want, problemsOf(s), cmp.AllowUnexported(problem{})); diff != "" {
		t.Fatalf("problems (-want +got):\n%s", diff)
	}
	wantNets := []vxlan.NetworkStatus{
		{Name: "back", VNI: 200, Active: true, Endpoints: 1, Peers: 1, VTEPs: 1},
		{Name: "front", VNI: 100, Active: true, Endpoints: 2, Peers: 2, VTEPs: 2, ProblemsDetected: 2},
	}
	got := slices.Clone(s.Networks)
	for i := range got {
		got[i].Problems = nil
	}
	if diff := cmp.Diff(wantNets, got); diff != "" {
		t.Fatalf("network status (-want +got):\n%s", diff)
	}
	if s.Reconciles != 3 || s.Failed != 0 || s.ProblemsDetected != 2 || s.Error != "" {
		t.Fatalf("counters: %+v; want 3 reconciles, none failed, 2 problems detected", s)
	}
	if n := strings.Count(logs.String(), "entry left out of the data plane"); n != 2 {
		t.Fatalf("logged %d left-out entries over 3 reconciles, want 2 (once per problem):\n%s", n, logs.String())
	}

	// The stale endpoint is released: the other one is programmed, the problems go, the counter stays.
	st.Networks[0].Peers = []vxlan.Peer{pB, pC, dupC}
	must(t, w.d.Reconcile(ctx, st))
	if diff := cmp.Diff(programmed(t, st), w.render()); diff != "" {
		t.Fatalf("kernel state after the conflict is gone (-want +got):\n%s", diff)
	}
	if s := w.d.Status(); len(problemsOf(s)) != 0 || s.ProblemsDetected != 2 || s.Networks[1].Peers != 3 {
		t.Fatalf("status after the conflict is gone: %+v; want no problems, 3 peers on front, 2 detected in all", s)
	}
}

// Every kind of bad entry is left out alone: the kernel ends up as with a state without it, the
// problem is reported, and Validate still names it.
func TestBadEntriesAreLeftOut(t *testing.T) {
	x := vxlan.Network{Name: "x", VNI: 100, Subnet: pfx("10.9.0.0/24"), Gateway: a("10.9.0.1")}
	for _, tc := range []struct {
		name string
		bad  func(*vxlan.State) // makes goodState bad
		kept func(*vxlan.State) // what of goodState is programmed then
		want []problem          // reasons are matched as substrings
	}{
		{"network with VNI zero: that network only", func(s *vxlan.State) { s.Networks[1].Network.VNI = 0 },
			func(s *vxlan.State) { s.Networks = s.Networks[:1] }, []problem{{"back", vxlan.KindNetwork, "VNI 0", "VNI 0 is out of range"}}},
		{"two networks on one VNI: both, the third stays", func(s *vxlan.State) {
			s.Networks = append(s.Networks, vxlan.NetworkState{Network: x, Endpoints: []vxlan.Endpoint{{ContainerID: "cx", NetNSPath: "/c3", IfName: "eth2", IP: a("10.9.0.2")}}})
		}, func(s *vxlan.State) { s.Networks = s.Networks[1:] }, []problem{
			{"front", vxlan.KindNetwork, "VNI 100", `also used by network "x"`}, {"x", vxlan.KindNetwork, "VNI 100", `also used by network "front"`}}},
		{"gateway outside the subnet", func(s *vxlan.State) { s.Networks[0].Network.Gateway = a("10.9.0.1") },
			func(s *vxlan.State) { s.Networks = s.Networks[1:] }, []problem{{"front", vxlan.KindNetwork, "VNI 100", "gateway 10.9.0.1 is not inside"}}},
		{"endpoint outside the subnet", func(s *vxlan.State) { s.Networks[0].Endpoints[0].IP = a("10.9.0.2") },
			func(s *vxlan.State) { s.Networks[0].Endpoints = s.Networks[0].Endpoints[1:] }, []problem{{"front", vxlan.KindEndpoint, "c1 at 10.9.0.2", "outside subnet 10.1.0.0/24"}}},
		{"endpoint without interface name", func(s *vxlan.State) { s.Networks[0].Endpoints[1].IfName = "" },
			func(s *vxlan.State) { s.Networks[0].Endpoints = s.Networks[0].Endpoints[:1] }, []problem{{"front", vxlan.KindEndpoint, "c3 at 10.1.0.5", "interface name"}}},
		{"two local containers on one address: neither", func(s *vxlan.State) { s.Networks[0].Endpoints[1].IP = c1.IP },
			func(s *vxlan.State) { s.Networks[0].Endpoints = nil }, []problem{
				{"front", vxlan.KindEndpoint, "c1 at 10.1.0.2", "also claimed by container c3 at 10.1.0.2"},
				{"front", vxlan.KindEndpoint, "c3 at 10.1.0.2", "also claimed by container c1 at 10.1.0.2"}}},
		{"peer on a local container's address: the local one wins", func(s *vxlan.State) { s.Networks[0].Peers[0].IP = c1.IP },
			func(s *vxlan.State) { s.Networks[0].Peers = s.Networks[0].Peers[1:] }, []problem{{"front", vxlan.KindPeer, "10.1.0.2 on 192.168.77.2", "claimed by container c1 on this host"}}},
		{"peer on the gateway's address", func(s *vxlan.State) { s.Networks[1].Peers[0].IP = back.Gateway },
			func(s *vxlan.State) { s.Networks[1].Peers = nil }, []problem{{"back", vxlan.KindPeer, "10.2.0.1 on 192.168.77.3", "is the network's gateway"}}},
		{"peer without VTEP", func(s *vxlan.State) { s.Networks[0].Peers[1].VTEP = netip.Addr{} },
			func(s *vxlan.State) { s.Networks[0].Peers = s.Networks[0].Peers[:1] }, []problem{{"front", vxlan.KindPeer, "10.1.0.4 on invalid IP", "no VTEP address"}}},
		{"two peers with one MAC", func(s *vxlan.State) {
			mac := net.HardwareAddr{0x02, 0x42, 1, 2, 3, 4}
			s.Networks[0].Peers[0].MAC, s.Networks[0].Peers[1].MAC = mac, mac
		}, func(s *vxlan.State) { s.Networks[0].Peers = nil }, []problem{
			{"front", vxlan.KindPeer, "10.1.0.3 on 192.168.77.2", "MAC 02:42:01:02:03:04 is also claimed by peer 10.1.0.4 on 192.168.77.3"},
			{"front", vxlan.KindPeer, "10.1.0.4 on 192.168.77.3", "MAC 02:42:01:02:03:04 is also claimed by peer 10.1.0.3 on 192.168.77.2"}}},
		{"multicast VTEP", func(s *vxlan.State) { s.Networks[0].VTEPs = append(s.Networks[0].VTEPs, a("239.1.1.1")) },
			func(s *vxlan.State) {}, []problem{{"front", vxlan.KindVTEP, "239.1.1.1", "not a unicast address"}}},
		{"entry the caller could not parse", func(s *vxlan.State) {
			s.Networks[1].LeftOut = []vxlan.Problem{{Network: "back", Kind: vxlan.KindPeer, Entry: `"10.2.0.x" on "192.168.77.3"`, Reason: "does not parse"}}
		}, func(s *vxlan.State) {}, []problem{{"back", vxlan.KindPeer, `"10.2.0.x" on "192.168.77.3"`, "does not parse"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, kept := goodState(), goodState()
			tc.bad(&st)
			tc.kept(&kept)
			w := newWorld(t, 1500)
			if err := w.d.Reconcile(context.Background(), st); err != nil {
				t.Fatalf("reconcile: %v; want the bad entry left out and no error", err)
			}
			if diff := cmp.Diff(programmed(t, kept), w.render()); diff != "" {
				t.Fatalf("kernel state: want all but the bad entry (-want +got):\n%s", diff)
			}
			got := problemsOf(w.d.Status())
			if len(got) != len(tc.want) {
				t.Fatalf("problems: got %+v, want %+v", got, tc.want)
			}
			for i, p := range tc.want {
				if g := got[i]; g.network != p.network || g.kind != p.kind || g.entry != p.entry || !strings.Contains(g.reason, p.reason) {
					t.Errorf("problem %d: got %+v, want %+v (reason as a substring)", i, g, p)
				}
			}
			if err := st.Validate(); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want[0].reason) {
				t.Errorf("Validate: got %v, want invalid argument mentioning %q", err, tc.want[0].reason)
			}
		})
	}
}

// The outcome does not depend on the order in which the controller listed the entries.
func TestLeftOutIsOrderIndependent(t *testing.T) {
	dup := []vxlan.Peer{{IP: a("10.1.0.9"), VTEP: a("192.168.77.2")}, pB, {IP: a("10.1.0.9"), VTEP: a("192.168.77.3")}, pC, pB}
	var first vxlan.State
	var firstProbs []vxlan.Problem
	for i := range 6 {
		st := goodState()
		st.Networks[0].Peers = slices.Clone(dup)
		rot := i % len(dup)
		st.Networks[0].Peers = append(st.Networks[0].Peers[rot:], st.Networks[0].Peers[:rot]...)
		if i%2 == 1 {
			slices.Reverse(st.Networks[0].Peers)
			slices.Reverse(st.Networks)
		}
		kept, probs := st.Sanitize()
		slices.SortFunc(kept.Networks, func(a, b vxlan.NetworkState) int { return int(a.Network.VNI) - int(b.Network.VNI) })
		for _, ns := range kept.Networks {
			slices.SortFunc(ns.Peers, func(a, b vxlan.Peer) int {
				return strings.Compare(a.IP.String()+a.VTEP.String(), b.IP.String()+b.VTEP.String())
			})
		}
		slices.SortFunc(probs, func(a, b vxlan.Problem) int { return strings.Compare(a.String(), b.String()) })
		if i == 0 {
			first, firstProbs = kept, probs
			continue
		}
		if diff := cmp.Diff(first, kept, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Fatalf("order %d: kept state differs (-first +this):\n%s", i, diff)
		}
		if diff := cmp.Diff(firstProbs, probs); diff != "" {
			t.Fatalf("order %d: problems differ (-first +this):\n%s", i, diff)
		}
	}
	if len(firstProbs) != 2 || len(first.Networks[0].Peers) != 2 {
		t.Fatalf("kept %v, problems %v; want pB and pC kept once each and the two claims on 10.1.0.9 left out", first.Networks[0].Peers, firstProbs)
	}
}
