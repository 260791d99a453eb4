package overlay

import (
	"context"
	nip "net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	vnl "github.com/vishvananda/netlink"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/vxlan"
)

// The driver's desired state, programmed by the real vxlan data plane (on fake netlink and iptables),
// with one address handed out twice, a remote endpoint whose address does not parse and a network
// whose subnet does not: the rest converges, and NetworkDataplane (ovctl network inspect on this host)
// shows what is programmed and each left-out entry with its reason.
func TestBadEntriesAreReportedByNetworkInspect(t *testing.T) {
	nl := netlink.NewFake()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(nl.AddLink("", &vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: "eth0", MTU: 1500}}, "192.168.77.11/24"))
	for _, ns := range []string{"/c1", "/c6", "/c8"} {
		nl.AddNamespace(ns)
	}
	cfg := vxlan.DefaultConfig()
	cfg.LocalIP, cfg.IPForward, cfg.Netlink, cfg.IPTables = nip.MustParseAddr("192.168.77.11"), false, nl, iptables.NewFake()
	dp, err := vxlan.New(cfg)
	must(err)
	ctl := newFakeController()
	d, err := New(Config{
		Host: "host1", Address: nip.MustParseAddr("192.168.77.11"), StatePath: filepath.Join(t.TempDir(), "overlay.json"),
		Connect: ctl.connect, Dataplane: dp, Members: &fakeMembers{changes: make(chan struct{}, 1)},
	})
	must(err)
	ep := func(host, container, ip, vtep string) api.Endpoint {
		return api.Endpoint{Host: host, Container: container, IP: ip, VTEP: vtep}
	}
	d.st.Networks = map[string]*netState{
		"front": {Network: api.Network{Name: "front", Subnet: "10.20.0.0/24", Gateway: "10.20.0.1", VNI: 4096},
			Local: map[string]localEndpoint{"c1": {Container: "c1", Netns: "/c1", IfName: "eth0", IP: "10.20.0.2"}},
			Remote: map[string]api.Endpoint{
				"host1/c1": ep("host1", "c1", "10.20.0.2", "192.168.77.11"),
				"host2/c2": ep("host2", "c2", "10.20.0.3", "192.168.77.12"),
				"host3/c3": ep("host3", "c3", "10.20.0.3", "192.168.77.13"), // the same address again
				"host2/c4": ep("host2", "c4", "10.20.0.4", "192.168.77.12"),
				"host3/c5": ep("host3", "c5", "10.20.0.x", "192.168.77.13"), // does not parse
			}},
		"back": {Network: api.Network{Name: "back", Subnet: "10.30.0.0/24", Gateway: "10.30.0.1", VNI: 4097},
			Local:  map[string]localEndpoint{"c6": {Container: "c6", Netns: "/c6", IfName: "eth0", IP: "10.30.0.2"}},
			Remote: map[string]api.Endpoint{"host2/c7": ep("host2", "c7", "10.30.0.3", "192.168.77.12")}},
		"broken": {Network: api.Network{Name: "broken", Subnet: "nonsense", VNI: 4098},
			Local: map[string]localEndpoint{"c8": {Container: "c8", Netns: "/c8", IfName: "eth0", IP: "10.40.0.2"}}},
	}
	if err := dp.Reconcile(context.Background(), d.desired()); err != nil {
		t.Fatalf("reconcile: %v; want the bad entries left out and no error", err)
	}
	for _, want := range []string{"neigh ovvx-4096 10.20.0.4 ", "neigh ovvx-4097 10.30.0.3 ", "addr ovgw-4096 10.20.0.1/24", "addr ovgw-4097 10.30.0.1/24"} {
		if !strings.Contains(nl.Render(""), want) {
			t.Errorf("host namespace lacks %q:\n%s", want, nl.Render(""))
		}
	}
	if strings.Contains(nl.Render(""), "10.20.0.3") {
		t.Errorf("an entry of the address handed out twice is programmed:\n%s", nl.Render(""))
	}
	dup := "its address 10.20.0.3 is also claimed by peer 10.20.0.3 on 192.168.77.1"
	want := map[string]*api.NetworkDataplane{
		// host3 still serves front (its c3 is left out, not host3): it keeps its flood entry.
		"front": {Host: "host1", Active: true, Endpoints: 1, Peers: 1, VTEPs: 2, ProblemsDetected: 3, Problems: []api.DataplaneProblem{
			{Kind: api.DataplanePeer, Entry: `"10.20.0.x" on "192.168.77.13"`, Reason: `container c5 of host "host3" has an address or VTEP that does not parse`},
			{Kind: api.DataplanePeer, Entry: "10.20.0.3 on 192.168.77.12", Reason: dup + "3"},
			{Kind: api.DataplanePeer, Entry: "10.20.0.3 on 192.168.77.13", Reason: dup + "2"},
		}},
		"back":   {Host: "host1", Active: true, Endpoints: 1, Peers: 1, VTEPs: 1},
		"broken": {Host: "host1", ProblemsDetected: 1, Problems: []api.DataplaneProblem{{Kind: api.DataplaneNetwork, Entry: "VNI 4098", Reason: `subnet "nonsense" is not a CIDR`}}},
	}
	for name, w := range want {
		got := d.NetworkDataplane(name)
		for i := range got.Problems {
			if got.Problems[i].Since.IsZero() {
				t.Errorf("%s: problem %d has no time", name, i)
			}
			if r := got.Problems[i].Reason; i < len(w.Problems) && strings.HasPrefix(r, w.Problems[i].Reason) {
				got.Problems[i].Reason = w.Problems[i].Reason // reasons are compared by their start
			}
		}
		if diff := cmp.Diff(w, got, cmpopts.IgnoreFields(api.DataplaneProblem{}, "Since")); diff != "" {
			t.Errorf("network %s (-want +got):\n%s", name, diff)
		}
	}
	if why := d.leftOut("broken", "c8"); !strings.Contains(why, "nonsense") {
		t.Errorf("why c8 has no interface: %q, want the network's problem", why)
	}
	if why := d.leftOut("front", "c1"); why != "" {
		t.Errorf("c1 is programmed, yet left out because %q", why)
	}
}
