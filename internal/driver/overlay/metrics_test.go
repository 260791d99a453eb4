package overlay

import (
	"context"
	"fmt"
	nip "net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/membership"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/testutil"
	"github.com/ovnet/ov/internal/vxlan"
)

// figure reads one figure from reg through the /metrics handler; -1 when it is not exposed.
func figure(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	_, s := testutil.Scrape(t, reg)
	if v, ok := testutil.MetricValue(s, name, labels); ok {
		return v
	}
	return -1
}

// The overlay metrics of a host whose driver is programmed by the real vxlan data plane (on fake
// netlink): endpoints and peers per network, reconciles and their duration, and a neighbour entry
// deleted behind the driver's back counted as a repair when the next reconcile puts it back; gossip
// members by state.
func TestOverlayMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	nl := netlink.NewFake()
	if err := nl.AddLink("", &vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: "eth0", MTU: 1500}}, "192.168.77.11/24"); err != nil {
		t.Fatal(err)
	}
	nl.AddNamespace("/c1")
	cfg := vxlan.DefaultConfig()
	cfg.LocalIP, cfg.IPForward, cfg.Netlink, cfg.IPTables = nip.MustParseAddr("192.168.77.11"), false, nl, iptables.NewFake()
	cfg.OnReconcile = m.ObserveReconcile
	dp, err := vxlan.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	members := &fakeMembers{changes: make(chan struct{}, 1), members: []membership.Member{
		{Name: "host1", Alive: true, Agent: true}, {Name: "host2", Alive: true, Agent: true},
		{Name: "host3", Alive: true, Agent: false}, {Name: "host4", Alive: false},
	}}
	d, err := New(Config{
		Host: "host1", Address: nip.MustParseAddr("192.168.77.11"), StatePath: filepath.Join(t.TempDir(), "overlay.json"),
		Connect: newFakeController().connect, Dataplane: dp, Members: members, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	d.st.Networks = map[string]*netState{
		"front": {Network: api.Network{Name: "front", Subnet: "10.20.0.0/24", Gateway: "10.20.0.1", VNI: 4096}, Revision: 42,
			Local: map[string]localEndpoint{"c1": {Container: "c1", Netns: "/c1", IfName: "eth0", IP: "10.20.0.2"}},
			Remote: map[string]api.Endpoint{
				"host1/c1": {Host: "host1", Container: "c1", IP: "10.20.0.2", VTEP: "192.168.77.11"},
				"host2/c2": {Host: "host2", Container: "c2", IP: "10.20.0.3", VTEP: "192.168.77.12"},
				"host3/c3": {Host: "host3", Container: "c3", IP: "10.20.0.4", VTEP: "192.168.77.13"},
			}},
	}
	ctx := context.Background()
	if err := dp.Reconcile(ctx, d.desired()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ov_agent_overlay_endpoints", map[string]string{"network": "front"}, 1},
		{"ov_agent_overlay_peers", map[string]string{"network": "front"}, 2},
		{"ov_agent_overlay_watch_revision", map[string]string{"network": "front"}, 42},
		{"ov_agent_overlay_reconciles_total", nil, 1},
		{"ov_agent_overlay_reconciles_partial_total", nil, 0}, // a complete reconcile
		{"ov_agent_overlay_reconcile_duration_seconds_count", nil, 1},
		{"ov_agent_overlay_reconcile_errors_total", nil, 0},
		{"ov_agent_overlay_kernel_repairs_total", nil, 0}, // a new state is no drift
		{"ov_agent_gossip_members", map[string]string{"state": "alive"}, 2},
		{"ov_agent_gossip_members", map[string]string{"state": "suspect"}, 1},
		{"ov_agent_gossip_members", map[string]string{"state": "dead"}, 1},
		{"ov_agent_controller_reachable", nil, 0},
	} {
		if v := figure(t, reg, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	if v := figure(t, reg, "ov_agent_overlay_kernel_changes_total", nil); v <= 0 {
		t.Errorf("kernel changes after setting a network up: %v", v)
	}

	// Someone deletes the neighbour entry of a remote endpoint; the next reconcile (of the same
	// desired state) puts it back, and that is a repair.
	h, err := nl.Handle("")
	if err != nil {
		t.Fatal(err)
	}
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	ix := 0
	for _, l := range links {
		if l.Attrs().Name == vxlan.VXLANName(4096) {
			ix = l.Attrs().Index
		}
	}
	if err := h.NeighDel(&vnl.Neigh{LinkIndex: ix, Family: unix.AF_INET, IP: nip.MustParseAddr("10.20.0.3").AsSlice()}); err != nil {
		t.Fatal(err)
	}
	if err := dp.Reconcile(ctx, d.desired()); err != nil {
		t.Fatal(err)
	}
	if v := figure(t, reg, "ov_agent_overlay_kernel_repairs_total", nil); v != 1 {
		t.Errorf("repairs after one neighbour entry deleted by hand: %v, want 1", v)
	}
	if v := figure(t, reg, "ov_agent_overlay_reconciles_total", nil); v != 2 {
		t.Errorf("reconciles: %v, want 2", v)
	}
}

// The controller's reachability follows the heartbeats: 1 with the time of the last success while
// it answers, 0 when it stops.
func TestControllerReachabilityMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ctl := newFakeController()
	start := time.Now()
	startAgent(t, Config{
		Host: "host1", Address: nip.MustParseAddr("192.168.77.11"), StatePath: filepath.Join(t.TempDir(), "overlay.json"),
		Connect: ctl.connect, JoinToken: "join", RequestTimeout: time.Second, Heartbeat: 50 * time.Millisecond, Metrics: m,
	})
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := figure(t, reg, "ov_agent_controller_reachable", nil); v != 1 {
			return fmt.Errorf("reachable = %v, want 1", v)
		}
		if v := figure(t, reg, "ov_agent_controller_last_success_timestamp_seconds", nil); v < float64(start.Unix()) {
			return fmt.Errorf("last success at %v, before the test started (%d)", v, start.Unix())
		}
		return nil
	})
	ctl.mu.Lock()
	ctl.down = true
	ctl.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := figure(t, reg, "ov_agent_controller_reachable", nil); v != 0 {
			return fmt.Errorf("reachable = %v with the controller down, want 0", v)
		}
		return nil
	})
	if v := figure(t, reg, "ov_agent_controller_last_success_timestamp_seconds", nil); v < float64(start.Unix()) {
		t.Errorf("the last success time was lost when the controller went down: %v", v)
	}
}
