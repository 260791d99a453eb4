package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
)

// metricsPort is where the metrics lab's daemons serve /metrics (lab.Config.MetricsPort).
const metricsPort = 9480

// startMetricsLab starts a 2-host lab whose controller and agents serve metrics, registered for
// teardown like every lab of the package.
func startMetricsLab(t *testing.T) *lab.Lab {
	t.Helper()
	testutil.RequireRoot(t)
	cfg := lab.DefaultConfig()
	cfg.Prefix, cfg.Subnet, cfg.Hosts = "ovmet", netip.MustParsePrefix("192.168.88.0/24"), 2
	cfg.Dir, cfg.Bin = filepath.Join(tmpDir, cfg.Prefix), binDir
	cfg.MetricsPort = metricsPort
	cfg.AgentArgs = []string{"--overlay-resync", "2s", "--log-level", "debug"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, cfg)
	if l != nil {
		labsMu.Lock()
		labs = append(labs, l)
		labsMu.Unlock()
	}
	if err != nil {
		t.Fatalf("start lab %s: %v", cfg.Prefix, err)
	}
	for _, h := range l.Hosts {
		ctl(t, l, h.Name, "image", "import", image, "busybox")
	}
	return l
}

// scraped is one scrape of a daemon's /metrics.
type scraped struct {
	text    string
	samples []testutil.Sample
}

func scrapeLab(t *testing.T, l *lab.Lab, who string) scraped {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	text, err := l.Metrics(ctx, who)
	if err != nil {
		t.Fatal(err)
	}
	s, err := testutil.ParseMetrics(text)
	if err != nil {
		t.Fatalf("metrics of %s: %v", who, err)
	}
	return scraped{text, s}
}

// get is a figure of the scrape; -1 when it is not exposed.
func (s scraped) get(name string, labels map[string]string) float64 {
	if v, ok := testutil.MetricValue(s.samples, name, labels); ok {
		return v
	}
	return -1
}

// TestMetrics scrapes the controller's and an agent's /metrics in a lab and checks that the figures
// move as the lab does things: a container started raises the running count and the start latency
// histogram, the allocation of its address and the watches of the hosts show on the controller, and
// a neighbour entry of a remote endpoint deleted by hand in the host's namespace shows as a kernel
// repair once the agent has put it back. No token appears in either output.
func TestMetrics(t *testing.T) {
	l := startMetricsLab(t)
	before := scrapeLab(t, l, "host1")
	running0 := before.get("ov_agent_containers", map[string]string{"state": "running"})
	starts0 := before.get("ov_agent_container_start_seconds_count", nil)
	if running0 < 0 || starts0 < 0 {
		t.Fatalf("host1 exposes no container figures:\n%s", before.text)
	}
	if v := before.get("ov_agent_controller_reachable", nil); v != 1 {
		t.Errorf("host1: controller reachable = %v, want 1 in a lab that runs", v)
	}

	networkOn(t, l, "metnet", "--subnet", "10.88.0.0/24")
	c1 := runOn(t, l, "host1", "met1", "metnet", "sleep", "3600")
	c2 := runOn(t, l, "host2", "met2", "metnet", "sleep", "3600")
	after := scrapeLab(t, l, "host1")
	if v := after.get("ov_agent_containers", map[string]string{"state": "running"}); v != running0+1 {
		t.Errorf("host1 running containers: %v before, %v after starting one", running0, v)
	}
	if v := after.get("ov_agent_container_start_seconds_count", nil); v != starts0+1 {
		t.Errorf("host1 start latency observations: %v before, %v after starting one", starts0, v)
	}

	// The overlay: one local endpoint, one peer on host1; the controller allocated both addresses and
	// holds the hosts' watches.
	var host1 scraped
	testutil.Eventually(t, 20*time.Second, func() error {
		host1 = scrapeLab(t, l, "host1")
		net := map[string]string{"network": "metnet"}
		if e, p := host1.get("ov_agent_overlay_endpoints", net), host1.get("ov_agent_overlay_peers", net); e != 1 || p != 1 {
			return fmt.Errorf("host1 metnet: %v endpoints, %v peers programmed; want 1 and 1", e, p)
		}
		return nil
	})
	if v := host1.get("ov_agent_gossip_members", map[string]string{"state": "alive"}); v != 2 {
		t.Errorf("host1 sees %v alive gossip members, want 2", v)
	}
	ctrl := scrapeLab(t, l, "controller")
	if v := ctrl.get("ov_controller_allocations_total", map[string]string{"network": "metnet", "outcome": "created"}); v != 2 {
		t.Errorf("controller: %v addresses created on metnet, want 2", v)
	}
	if v := ctrl.get("ov_controller_watches_open", nil); v < 2 {
		t.Errorf("controller: %v watches open, want one per host serving metnet (2)", v)
	}
	if v := ctrl.get("ov_controller_watch_lag_revisions", map[string]string{"host": "host1"}); v < 0 {
		t.Errorf("controller: no watch lag for host1:\n%s", ctrl.text)
	}
	if v := ctrl.get("ov_controller_etcd_request_duration_seconds_count", map[string]string{"op": "txn"}); v < 2 {
		t.Errorf("controller: %v etcd transactions timed, want at least the 2 allocations", v)
	}
	if v := ctrl.get("ov_controller_http_requests_total", map[string]string{"route": "POST /v1/networks/{name}/endpoints", "code": "201"}); v != 2 {
		t.Errorf("controller: %v allocation requests answered 201, want 2", v)
	}
	for _, tok := range []string{l.AdminToken, l.JoinToken} {
		for who, text := range map[string]string{"controller": ctrl.text, "host1": host1.text} {
			if tok != "" && strings.Contains(text, tok) {
				t.Errorf("the metrics of %s show a token", who)
			}
		}
	}

	// Drift: delete the neighbour entry of c2 (remote) on host1's VXLAN device; the agent puts it
	// back and counts the repair.
	vx := fmt.Sprintf("ovvx-%d", vniOf(t, l, "metnet"))
	h1, err := l.Host("host1")
	if err != nil {
		t.Fatal(err)
	}
	repairs0 := host1.get("ov_agent_overlay_kernel_repairs_total", nil)
	if repairs0 < 0 {
		t.Fatalf("host1 exposes no repairs counter:\n%s", host1.text)
	}
	if out, err := exec.Command("ip", "-n", h1.Netns, "neigh", "del", c2.IP, "dev", vx).CombinedOutput(); err != nil {
		t.Fatalf("delete the neighbour entry of %s on %s: %v: %s", c2.IP, vx, err, out)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		out, err := exec.Command("ip", "-n", h1.Netns, "neigh", "show", "dev", vx).CombinedOutput()
		if err != nil || !strings.Contains(string(out), c2.IP+" ") {
			return fmt.Errorf("the neighbour entry of %s is not back on %s: %v\n%s", c2.IP, vx, err, out)
		}
		if v := scrapeLab(t, l, "host1").get("ov_agent_overlay_kernel_repairs_total", nil); v <= repairs0 {
			return fmt.Errorf("host1 kernel repairs: %v before the entry was deleted, %v after", repairs0, v)
		}
		return nil
	})
	if err := ping(l, c1, c2.IP); err != nil {
		t.Error(err)
	}
}
