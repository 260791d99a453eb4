package overlay

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/controllertest"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/testutil"
)

// watchController runs a real controller with metrics; oldRoute makes it answer GET /v1/endpoints
// as a controller older than the host watch does (404, no such API path).
func watchController(t *testing.T, oldRoute bool) (*client.Client, func(string) Controller, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	e := storetest.Embedded(t, true)
	hs := controllertest.Start(t, controllertest.Config{Endpoints: []string{e.ClientURL()}, AdminToken: testAdminToken, JoinToken: testJoinToken,
		Adjust: func(c *controller.Config) { c.Metrics = reg }})
	u := hs.URL
	if oldRoute {
		target, _ := url.Parse(hs.URL)
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.FlushInterval = -1 // watch streams pass at once
		old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/endpoints" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, `{"code":"not_found","message":"%s %s: no such API path; see docs/api.md: not found"}`, r.Method, r.URL.Path)
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(func() { old.CloseClientConnections(); old.Close() })
		t.Cleanup(hs.HTTP.CloseClientConnections) // runs first: the proxied streams end
		u = old.URL
	}
	base, err := client.New(client.Config{URL: u, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return base.WithToken(testAdminToken), func(tok string) Controller { return base.WithToken(tok) }, reg
}

// watchesOpen reads the controller's open watch streams gauge.
func watchesOpen(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "ov_controller_watches_open" {
			return int(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return -1
}

// remotes lists, per network, the remote endpoints an agent knows (its own excluded).
func remotes(h *harness, host string) []string {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	var out []string
	for name, ns := range h.d.st.Networks {
		for _, ep := range ns.Remote {
			if ep.Host != host {
				out = append(out, name+"/"+ep.Container)
			}
		}
	}
	sort.Strings(out)
	return out
}

// convergeOnNetworks starts two agents on a controller, attaches a container of each to n networks
// and waits until each agent knows the other's containers; it returns the agents.
func convergeOnNetworks(t *testing.T, admin *client.Client, connect func(string) Controller, logs *logBuffer, n int) (h1, h2 *harness, want1 []string) {
	t.Helper()
	ctx := context.Background()
	var want2 []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		if _, err := admin.CreateNetwork(ctx, api.Network{Name: name, Driver: api.DriverOverlay, Subnet: fmt.Sprintf("10.30.%d.0/24", i)}); err != nil {
			t.Fatal(err)
		}
		want1, want2 = append(want1, name+"/c2-"+name), append(want2, name+"/c1-"+name)
	}
	sort.Strings(want1)
	sort.Strings(want2)
	agent := func(host, addr string) *harness {
		return startAgent(t, Config{Host: host, Address: netip.MustParseAddr(addr), StatePath: filepath.Join(t.TempDir(), "overlay.json"),
			Connect: connect, JoinToken: testJoinToken, RequestTimeout: 5 * time.Second, Heartbeat: 200 * time.Millisecond, Log: newLog(logs)})
	}
	h1, h2 = agent("host1", "192.168.77.11"), agent("host2", "192.168.77.12")
	for i, h := range []*harness{h1, h2} {
		testutil.Eventually(t, 10*time.Second, func() error { _, err := h.d.ready(); return err })
		for j := range n {
			name := fmt.Sprintf("m%d", j)
			c := fmt.Sprintf("c%d-%s", i+1, name)
			if _, err := h.d.Attach(ctx, driver.AttachRequest{Network: name, Container: c, Netns: "/run/ov/netns/" + c}); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if got := remotes(h1, "host1"); fmt.Sprint(got) != fmt.Sprint(want1) {
			return fmt.Errorf("host1 knows %v, want %v", got, want1)
		}
		if got := remotes(h2, "host2"); fmt.Sprint(got) != fmt.Sprint(want2) {
			return fmt.Errorf("host2 knows %v, want %v", got, want2)
		}
		return nil
	})
	return h1, h2, want1
}

// TestHostWatchOneStreamPerHost: two agents serving 8 networks each hold exactly one endpoint watch
// stream each on the controller (its ov_controller_watches_open gauge), and converge: each knows the
// other's container on every network, also after a network leaves one host's stream (its last
// container left) or the cluster (removed). Without the host watch (usePerNetworkWatches) they hold 16.
func TestHostWatchOneStreamPerHost(t *testing.T) {
	admin, connect, reg := watchController(t, false)
	var logs logBuffer
	const n = 8
	h1, h2, _ := convergeOnNetworks(t, admin, connect, &logs, n)
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := watchesOpen(t, reg); got != 2 {
			return fmt.Errorf("the controller has %d watch streams open for 2 agents serving %d networks each; want 2 (one per host)", got, n)
		}
		return nil
	})
	h1.d.mu.Lock()
	opened := h1.d.hw.opened
	h1.d.mu.Unlock()
	if opened > 3 { // the networks were attached one by one, 8 attaches in a burst
		t.Errorf("host1 opened its host stream %d times for %d networks attached in a row; want the burst debounced", opened, n)
	}

	// host1's container on m0 leaves: m0 leaves host1's stream; the other networks still converge.
	ctx := context.Background()
	if err := h1.d.Detach(ctx, "m0", "c1-m0"); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.d.Attach(ctx, driver.AttachRequest{Network: "m7", Container: "late", Netns: "/run/ov/netns/late"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		h1.d.mu.Lock()
		inStream := h1.d.hw.want["m0"]
		h1.d.mu.Unlock()
		if inStream {
			return fmt.Errorf("m0 is still in host1's stream after its last container left")
		}
		if got := remotes(h1, "host1"); !contains(got, "m7/late") {
			return fmt.Errorf("host1 knows %v, not yet m7/late", got)
		}
		if got := watchesOpen(t, reg); got != 2 {
			return fmt.Errorf("%d watch streams open, want 2", got)
		}
		return nil
	})

	// m1 is removed from the cluster (forced, with its containers' addresses): it leaves host1's
	// stream (a removed event), which goes on for the others.
	if err := admin.DeleteNetwork(ctx, "m1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.d.Attach(ctx, driver.AttachRequest{Network: "m6", Container: "later", Netns: "/run/ov/netns/later"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		h1.d.mu.Lock()
		inStream := h1.d.hw.want["m1"]
		h1.d.mu.Unlock()
		if inStream || logs.count("network=m1", "removed from the cluster") == 0 {
			return fmt.Errorf("m1 still in host1's stream (%v), or no log saying it was removed", inStream)
		}
		if got := remotes(h1, "host1"); !contains(got, "m6/later") {
			return fmt.Errorf("host1 knows %v, not yet m6/later", got)
		}
		if got := watchesOpen(t, reg); got != 2 {
			return fmt.Errorf("%d watch streams open, want 2", got)
		}
		return nil
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestHostWatchFallsBack: against a controller that does not serve the host watch (older: 404 on
// the route), the agents watch each network on its own stream, say so once, and converge.
func TestHostWatchFallsBack(t *testing.T) {
	admin, connect, reg := watchController(t, true)
	var logs logBuffer
	const n = 3
	convergeOnNetworks(t, admin, connect, &logs, n)
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := watchesOpen(t, reg); got != 2*n {
			return fmt.Errorf("the controller has %d watch streams open, want %d (one per network and host)", got, 2*n)
		}
		return nil
	})
	if got := logs.count("does not serve the host watch stream"); got != 2 {
		t.Fatalf("%d log lines say the controller has no host watch, want one per agent; logs:\n%s", got, logs.String())
	}
}
