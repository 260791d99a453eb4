package vxlan_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/testutil"
	"github.com/ovnet/ov/internal/vxlan"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// runner runs a world's driver with RunNetworks over a state the test changes, recording every
// reconcile and every call of networks.
type runner struct {
	w     *world
	mu    sync.Mutex
	cur   vxlan.State
	seen  []vxlan.Reconciled
	calls [][]string    // the names networks was called with
	gate  chan struct{} // if set, networks waits for it (once)
	stop  func()
	t     *testing.T
}

func startRunner(t *testing.T, st vxlan.State, opts ...func(*vxlan.Config)) *runner {
	t.Helper()
	r := &runner{cur: st}
	r.w = newWorld(t, 1500, append([]func(*vxlan.Config){func(c *vxlan.Config) {
		c.Resync = time.Hour
		c.OnReconcile = func(rec vxlan.Reconciled) { r.mu.Lock(); r.seen = append(r.seen, rec); r.mu.Unlock() }
	}}, opts...)...)
	desired := func() vxlan.State { r.mu.Lock(); defer r.mu.Unlock(); return r.cur }
	networks := func(names []string) vxlan.State {
		r.mu.Lock()
		gate := r.gate
		r.gate = nil
		r.calls = append(r.calls, names)
		var out vxlan.State
		for _, ns := range r.cur.Networks {
			if slices.Contains(names, ns.Network.Name) {
				out.Networks = append(out.Networks, ns)
			}
		}
		r.mu.Unlock()
		if gate != nil {
			<-gate
		}
		return out
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.w.d.RunNetworks(ctx, desired, networks) }()
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			r.stop()
		}
	})
	r.waitReconciles(t, 1)
	return r
}

// set changes network name of the desired state.
func (r *runner) set(name string, f func(ns *vxlan.NetworkState)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	nets := slices.Clone(r.cur.Networks)
	for i := range nets {
		if nets[i].Network.Name == name {
			f(&nets[i])
		}
	}
	r.cur = vxlan.State{Networks: nets, TunnelPeers: r.cur.TunnelPeers}
}

func (r *runner) reconciles() []vxlan.Reconciled {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

func (r *runner) waitReconciles(t *testing.T, n int) vxlan.Reconciled {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := len(r.reconciles()); got < n {
			return fmt.Errorf("%d reconciles, want %d", got, n)
		}
		return nil
	})
	time.Sleep(50 * time.Millisecond) // nothing more comes
	seen := r.reconciles()
	if len(seen) != n {
		t.Fatalf("%d reconciles, want %d: %+v", len(seen), n, seen)
	}
	return seen[n-1]
}

// twoNetworks is front (c1, c3 here; peers pB, pC) and back (c2 here; peer pBack).
func twoNetworks() vxlan.State {
	st := states[2].state
	return vxlan.State{Networks: slices.Clone(st.Networks), TunnelPeers: st.TunnelPeers}
}

var pD = vxlan.Peer{IP: a("10.1.0.6"), VTEP: a("192.168.77.2")}

// A network kick reconciles that network alone: drift planted in another network's table stays until
// the next complete reconcile, which repairs it and counts it as a repair; the network kick's own
// changes are no repair. Status and the rules stay those of the whole state.
func TestKickNetworkReconcilesThatNetworkOnly(t *testing.T) {
	r := startRunner(t, twoNetworks())
	w := r.w
	if diff := cmp.Diff(states[2].want, w.render()); diff != "" {
		t.Fatalf("after the first reconcile (-want +got):\n%s", diff)
	}
	// Drift in back: its peer's neighbour entry deleted behind ov's back.
	h, _ := w.nl.Handle("")
	vx := findLink(t, w, "", "ovvx-200")
	must(t, h.NeighDel(&vnl.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_INET, IP: pBack.IP.AsSlice()}))
	before := w.d.Status()

	r.set("front", func(ns *vxlan.NetworkState) { ns.Peers = append(slices.Clone(ns.Peers), pD) })
	w.d.KickNetwork("front")
	rec := r.waitReconciles(t, 2)
	if !rec.Partial || rec.Networks != 1 || rec.Repairs != 0 || rec.Changes != 2 || rec.Err != nil {
		t.Fatalf("the network kick's reconcile: %+v; want a partial one of 1 network with 2 changes (pD's neighbour and FDB entries), no repair", rec)
	}
	got := w.render()
	if !strings.Contains(got, "neigh ovvx-100 10.1.0.6 lladdr 02:42:0a:01:00:06") {
		t.Fatalf("pD not programmed:\n%s", got)
	}
	if strings.Contains(got, "neigh ovvx-200 10.2.0.9") {
		t.Fatalf("the network kick of front repaired back's table (it reconciled back too):\n%s", got)
	}
	st := w.d.Status()
	if st.Partial != before.Partial+1 || st.NetworksReconciled != before.NetworksReconciled+1 || st.Reconciles != before.Reconciles+1 {
		t.Fatalf("status counters %+v -> %+v; want one more reconcile, partial, of one network", before, st)
	}
	want := map[string][3]int{"front": {2, 3, 2}, "back": {1, 1, 1}} // endpoints, peers, VTEPs
	for _, n := range st.Networks {
		if g := [3]int{n.Endpoints, n.Peers, n.VTEPs}; g != want[n.Name] || !n.Active {
			t.Errorf("status of %s after the partial reconcile: %+v, want endpoints, peers, VTEPs %v", n.Name, n, want[n.Name])
		}
	}

	// The next complete reconcile repairs back, and counts it as drift.
	w.d.Kick()
	rec = r.waitReconciles(t, 3)
	if rec.Partial || rec.Repairs != 1 || rec.Networks != 2 {
		t.Fatalf("the complete reconcile after it: %+v; want back's neighbour repaired (1 repair) over 2 networks", rec)
	}
	// The result is the complete reconcile's of the same state.
	ref := newWorld(t, 1500)
	r.mu.Lock()
	final := r.cur
	r.mu.Unlock()
	must(t, ref.d.Reconcile(context.Background(), final))
	if diff := cmp.Diff(ref.render(), w.render()); diff != "" {
		t.Fatalf("state differs from a complete reconcile's (-complete +incremental):\n%s", diff)
	}
	// Drift in the kicked network itself is a repair of a partial reconcile.
	must(t, h.NeighDel(&vnl.Neigh{LinkIndex: findLink(t, w, "", "ovvx-100").Attrs().Index, Family: unix.AF_INET, IP: pD.IP.AsSlice()}))
	w.d.KickNetwork("front")
	if rec = r.waitReconciles(t, 4); !rec.Partial || rec.Repairs != 1 {
		t.Fatalf("a network kick that finds its own network drifted: %+v; want a partial reconcile with 1 repair", rec)
	}
}

// A peer on a new host, kicked per network, updates the firewall (its VXLAN must be accepted) from
// the merged state: the other network's rules stay.
func TestKickNetworkKeepsTheWholeFirewall(t *testing.T) {
	r := startRunner(t, twoNetworks())
	newHost := vxlan.Peer{IP: a("10.2.0.10"), VTEP: a("192.168.77.9")}
	r.set("back", func(ns *vxlan.NetworkState) { ns.Peers = append(slices.Clone(ns.Peers), newHost) })
	r.w.d.KickNetwork("back")
	if rec := r.waitReconciles(t, 2); !rec.Partial {
		t.Fatalf("reconcile %+v, want a partial one", rec)
	}
	ref := newWorld(t, 1500)
	r.mu.Lock()
	final := r.cur
	r.mu.Unlock()
	must(t, ref.d.Reconcile(context.Background(), final))
	if diff := cmp.Diff(ref.render(), r.w.render()); diff != "" {
		t.Fatalf("state differs from a complete reconcile's (-complete +incremental):\n%s", diff)
	}
	if !strings.Contains(r.w.render(), "-s 192.168.77.9/32") || !strings.Contains(r.w.render(), "-s 192.168.77.2/32") {
		t.Fatalf("ingress rules lack the new host or front's:\n%s", r.w.render())
	}
}

// Network kicks that arrive while a reconcile is under way coalesce into one reconcile of them all.
func TestKickNetworkCoalesces(t *testing.T) {
	r := startRunner(t, twoNetworks())
	gate := make(chan struct{})
	r.mu.Lock()
	r.gate = gate
	r.mu.Unlock()
	r.w.d.KickNetwork("front")
	testutil.Eventually(t, 10*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.calls) == 0 {
			return fmt.Errorf("networks not called")
		}
		return nil
	})
	for range 3 {
		r.w.d.KickNetwork("back")
		r.w.d.KickNetwork("front")
	}
	close(gate)
	r.waitReconciles(t, 3)
	r.mu.Lock()
	defer r.mu.Unlock()
	if diff := cmp.Diff([][]string{{"front"}, {"back", "front"}}, r.calls); diff != "" {
		t.Fatalf("networks was called with (-want +got):\n%s", diff)
	}
}

// What a partial reconcile cannot do alone falls back to a complete one.
func TestKickNetworkFallsBack(t *testing.T) {
	cases := []struct {
		name   string
		change func(r *runner)
	}{
		{"the network's last local container goes", func(r *runner) {
			r.set("back", func(ns *vxlan.NetworkState) { ns.Endpoints = nil })
		}},
		{"the network's definition changes", func(r *runner) {
			r.set("back", func(ns *vxlan.NetworkState) { ns.Network.MTU = 1300 })
		}},
		{"a network not served before becomes served", func(r *runner) {
			r.mu.Lock()
			r.cur.Networks = slices.Clone(r.cur.Networks[:1])
			r.mu.Unlock()
			r.w.d.Kick()
			r.waitReconciles(r.t, 2)
			r.mu.Lock()
			r.cur = twoNetworks()
			r.mu.Unlock()
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := startRunner(t, twoNetworks())
			r.t = t
			c.change(r)
			n := len(r.reconciles())
			r.w.d.KickNetwork("back")
			if rec := r.waitReconciles(t, n+1); rec.Partial || rec.Err != nil {
				t.Fatalf("reconcile %+v; want a complete one", rec)
			}
			ref := newWorld(t, 1500)
			r.mu.Lock()
			final := r.cur
			r.mu.Unlock()
			must(t, ref.d.Reconcile(context.Background(), final))
			if diff := cmp.Diff(ref.render(), r.w.render()); diff != "" {
				t.Fatalf("state differs from a complete reconcile's (-complete +incremental):\n%s", diff)
			}
		})
	}
}

// TestNetworkReconcileOfLocalContainers: a container joining or leaving a network this host already
// serves (an attach, a detach) reconciles that network alone (ReconcileNetworksNow), and leaves the
// kernel as a complete reconcile would: the joining container's macvlan made, the leaving one's
// deleted from its namespace.
func TestNetworkReconcileOfLocalContainers(t *testing.T) {
	r := startRunner(t, twoNetworks())
	r.t = t
	networks := func(names []string) vxlan.State {
		r.mu.Lock()
		defer r.mu.Unlock()
		var out vxlan.State
		for _, ns := range r.cur.Networks {
			if slices.Contains(names, ns.Network.Name) {
				out.Networks = append(out.Networks, ns)
			}
		}
		return out
	}
	desired := func() vxlan.State { r.mu.Lock(); defer r.mu.Unlock(); return r.cur }
	c4 := vxlan.Endpoint{ContainerID: "c4", NetNSPath: "/c2", IfName: "eth1", IP: a("10.2.0.4")}
	steps := []struct {
		name   string
		change func(ns *vxlan.NetworkState)
	}{
		{"c4 joins back", func(ns *vxlan.NetworkState) { ns.Endpoints = append(slices.Clone(ns.Endpoints), c4) }},
		{"c4 leaves back", func(ns *vxlan.NetworkState) {
			ns.Endpoints = slices.DeleteFunc(slices.Clone(ns.Endpoints), func(e vxlan.Endpoint) bool { return e.ContainerID == "c4" })
		}},
	}
	for _, st := range steps {
		r.set("back", st.change)
		n := len(r.reconciles())
		must(t, r.w.d.ReconcileNetworksNow(context.Background(), []string{"back"}, networks, desired))
		if rec := r.waitReconciles(t, n+1); !rec.Partial || rec.Networks != 1 || rec.Err != nil {
			t.Fatalf("%s: reconcile %+v; want one of back alone", st.name, rec)
		}
		ref := newWorld(t, 1500)
		must(t, ref.d.Reconcile(context.Background(), desired()))
		if diff := cmp.Diff(ref.render(), r.w.render()); diff != "" {
			t.Fatalf("%s: state differs from a complete reconcile's (-complete +network's):\n%s", st.name, diff)
		}
	}
}

// KeepPeers: entries Peers does not list are kept (a peer the caller has not heard of yet), those a
// listed peer replaces are replaced, new ones added; a withdrawn VTEP's go.
func TestKeepPeers(t *testing.T) {
	w := newWorld(t, 1500)
	st := twoNetworks()
	must(t, w.d.Reconcile(context.Background(), st))
	full := w.render()
	keep := twoNetworks()
	moved := vxlan.Peer{IP: pB.IP, VTEP: a("192.168.77.7")}        // pB now on another host
	keep.Networks[0].Peers = []vxlan.Peer{moved, pD}               // pC unknown
	keep.Networks[0].KeepPeers, keep.Networks[0].VTEPs = true, nil // pC's host known from its kept entries only
	keep.Networks[1].Peers = nil                                   // pBack unknown, on a withdrawn (dead) host
	keep.Networks[1].KeepPeers, keep.Networks[1].WithdrawVTEPs = true, []netip.Addr{pBack.VTEP}
	must(t, w.d.Reconcile(context.Background(), keep))
	got := w.render()
	for _, line := range []string{
		"neigh ovvx-100 10.1.0.4 lladdr 02:42:0a:01:00:04",                                                         // pC kept
		"fdb ovvx-100 02:42:0a:01:00:04 dst 192.168.77.3",                                                          // its FDB entry too
		"fdb ovvx-100 00:00:00:00:00:00 dst 192.168.77.3",                                                          // and its host's flood entry
		"fdb ovvx-100 02:42:0a:01:00:03 dst 192.168.77.7",                                                          // pB moved
		"neigh ovvx-100 10.1.0.6 lladdr 02:42:0a:01:00:06",                                                         // pD added
		"fdb ovvx-100 00:00:00:00:00:00 dst 192.168.77.7 flags=0x2",                                                // its new host's flood entry
		"-A OV-OVERLAY-IN -s 192.168.77.3/32 -d 192.168.77.1/32 -i eth0 -m u32 --u32 0x0>>0x16&0x3c@0xc>>0x8=0x64", // pC's host may send
	} {
		if !strings.Contains(got, line) {
			t.Errorf("with KeepPeers, no %q:\n%s", line, got)
		}
	}
	for _, line := range []string{"fdb ovvx-100 02:42:0a:01:00:03 dst 192.168.77.2", "neigh ovvx-200 10.2.0.9", "fdb ovvx-200 02:42:0a:02:00:09"} {
		if strings.Contains(got, line) {
			t.Errorf("with KeepPeers, %q stays (replaced, or on a withdrawn VTEP):\n%s", line, got)
		}
	}
	// Without KeepPeers the state is exact again.
	must(t, w.d.Reconcile(context.Background(), st))
	if diff := cmp.Diff(full, w.render()); diff != "" {
		t.Fatalf("after KeepPeers ends (-want +got):\n%s", diff)
	}
}

// watchingFake is the fake kernel with change notifications the test sends.
type watchingFake struct {
	*netlink.Fake
	events chan netlink.Event
}

func (f watchingFake) Watch(ctx context.Context, path string, fn func(netlink.Event)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-f.events:
			fn(e)
		}
	}
}

// A kernel notification about a VXLAN device's entries (the echo of every entry a reconcile sets,
// or an entry deleted by hand) reconciles that device's network alone; one about a link, everything.
func TestKernelNotificationKicksItsNetwork(t *testing.T) {
	events := make(chan netlink.Event)
	r := startRunner(t, twoNetworks(), func(c *vxlan.Config) {
		c.Netlink = watchingFake{c.Netlink.(*netlink.Fake), events}
		c.Watch = true
	})
	events <- netlink.Event{Link: "ovvx-200", Neigh: true, FDB: true, FDBSelf: true, Deleted: true}
	if rec := r.waitReconciles(t, 2); !rec.Partial || rec.Networks != 1 {
		t.Fatalf("after a notification of an FDB entry of ovvx-200: %+v, want a reconcile of back alone", rec)
	}
	r.mu.Lock()
	calls := slices.Clone(r.calls)
	r.mu.Unlock()
	if diff := cmp.Diff([][]string{{"back"}}, calls); diff != "" {
		t.Fatalf("networks was called with (-want +got):\n%s", diff)
	}
	events <- netlink.Event{Link: "ovgw-100", Deleted: true}
	if rec := r.waitReconciles(t, 3); rec.Partial {
		t.Fatalf("after a notification of a link: %+v, want a complete reconcile", rec)
	}
	events <- netlink.Event{Link: "ovvx-999", Neigh: true} // a VNI set up by nobody: everything
	if rec := r.waitReconciles(t, 4); rec.Partial {
		t.Fatalf("after a notification of an unknown device: %+v, want a complete reconcile", rec)
	}
}

// ReconcileNow computes the state once no other reconcile runs: a state computed before a
// reconcile of single networks that ran in between would undo it, and no pending kick would correct
// that (the attach that computed it took none).
func TestReconcileNowWaitsForTheRunningReconcile(t *testing.T) {
	hold := make(chan struct{})
	var held sync.Once
	entered := make(chan struct{})
	r := startRunner(t, twoNetworks(), func(c *vxlan.Config) {
		prev := c.OnReconcile
		c.OnReconcile = func(rec vxlan.Reconciled) {
			prev(rec)
			if rec.Partial {
				held.Do(func() { close(entered); <-hold }) // the partial reconcile holds the driver
			}
		}
	})
	r.set("front", func(ns *vxlan.NetworkState) { ns.Peers = append(slices.Clone(ns.Peers), pD) })
	r.w.d.KickNetwork("front")
	<-entered
	called := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- r.w.d.ReconcileNow(context.Background(), func() vxlan.State {
			close(called)
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.cur
		})
	}()
	select {
	case <-called:
		t.Fatal("ReconcileNow computed its state while a reconcile was running")
	case <-time.After(100 * time.Millisecond):
	}
	close(hold)
	<-called
	must(t, <-done)
}
