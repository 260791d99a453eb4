package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/testutil"
)

// scrape reads the registry the way Prometheus does, through the /metrics handler.
func scrape(t *testing.T, reg *prometheus.Registry) (string, []testutil.Sample) {
	t.Helper()
	return testutil.Scrape(t, reg)
}

// metric returns one figure of a scrape (a histogram's count: name_count), failing when absent.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	_, s := scrape(t, reg)
	v, ok := testutil.MetricValue(s, name, labels)
	if !ok {
		t.Fatalf("metric %s%v is not exposed", name, labels)
	}
	return v
}

// TestMetricsMove: the controller's metrics move with what it does: an allocation raises the
// allocation counter and histogram and the etcd figures, a watch raises the open watches and the
// events sent, and requests are counted by route pattern and status code, refused ones too. No token
// ever appears in the output.
func TestMetricsMove(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := storetest.Embedded(t, true)
	s := startControllerWith(t, []string{e.ClientURL()}, 5*time.Second, func(c *controller.Config) { c.Metrics = reg })
	ctx := context.Background()
	if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "n", Subnet: "10.45.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	hostJoin, err := s.Join.RegisterHost(ctx, api.Host{Name: "h", Address: "192.168.74.1"})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Join.WithToken(hostJoin.Token)

	created := map[string]string{"network": "n", "outcome": "created"}
	first, err := h.Allocate(ctx, api.Endpoint{Network: "n", Host: "h", Container: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if v := metric(t, reg, "ov_controller_allocations_total", created); v != 1 {
		t.Errorf("allocations created after one allocation: %v, want 1", v)
	}
	if v := metric(t, reg, "ov_controller_allocation_duration_seconds_count", nil); v != 1 {
		t.Errorf("allocation latency observations: %v, want 1", v)
	}
	if v := metric(t, reg, "ov_controller_etcd_txns_total", map[string]string{"result": "succeeded"}); v < 1 {
		t.Errorf("etcd transactions succeeded: %v, want at least the allocation's", v)
	}
	if v := metric(t, reg, "ov_controller_etcd_request_duration_seconds_count", map[string]string{"op": "txn"}); v < 1 {
		t.Errorf("etcd txn round trips timed: %v", v)
	}
	if v := metric(t, reg, "ov_controller_http_requests_total", map[string]string{"route": "POST /v1/networks/{name}/endpoints", "code": "201"}); v != 1 {
		t.Errorf("allocation requests answered 201: %v, want 1", v)
	}
	// A second allocation for the same owner is no new address: outcome existing.
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "n", Host: "h", Container: "a"}); err != nil {
		t.Fatal(err)
	}
	if v := metric(t, reg, "ov_controller_allocations_total", map[string]string{"network": "n", "outcome": "existing"}); v != 1 {
		t.Errorf("allocations existing: %v, want 1", v)
	}

	// Asking for an address another container holds: the transaction's compares fail (a conflict in
	// etcd's terms) and the allocation is refused.
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "n", Host: "h", Container: "c", IP: first.IP}); err == nil {
		t.Fatal("two containers got the same address")
	}
	if v := metric(t, reg, "ov_controller_etcd_txns_total", map[string]string{"result": "failed_compare"}); v < 1 {
		t.Errorf("etcd transactions whose compares failed: %v, want at least 1", v)
	}
	if v := metric(t, reg, "ov_controller_allocations_total", map[string]string{"network": "n", "outcome": "conflict"}); v != 1 {
		t.Errorf("allocations refused as a conflict: %v, want 1", v)
	}
	if v := metric(t, reg, "ov_controller_allocations_total", nil); v != 3 {
		t.Errorf("allocations counted: %v, want the 3 asked for", v)
	}

	// A watch is counted open while it runs, its events as they are sent, and its lag per host.
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.WatchEndpoints(wctx, "n", 0, func(api.EndpointEvent) error { return nil })
	}()
	testutil.Eventually(t, 10*time.Second, func() error {
		if v := lookup(t, reg, "ov_controller_watches_open", nil); v != 1 {
			return fmt.Errorf("watches open: %v, want 1", v)
		}
		if v := lookup(t, reg, "ov_controller_watch_events_sent_total", map[string]string{"type": "snapshot"}); v < 1 {
			return fmt.Errorf("snapshots sent: %v", v)
		}
		if _, ok := testutil.MetricValue(mustSamples(t, reg), "ov_controller_watch_lag_revisions", map[string]string{"host": "h"}); !ok {
			return fmt.Errorf("no watch lag for host h")
		}
		return nil
	})
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "n", Host: "h", Container: "b"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if v := lookup(t, reg, "ov_controller_watch_events_sent_total", map[string]string{"type": "put"}); v < 1 {
			return fmt.Errorf("puts sent: %v", v)
		}
		if v := lookup(t, reg, "ov_controller_watch_lag_max_revisions", nil); v != 0 {
			return fmt.Errorf("watch lag of an agent that has everything: %v", v)
		}
		return nil
	})
	cancel()
	<-done
	testutil.Eventually(t, 10*time.Second, func() error {
		if v := lookup(t, reg, "ov_controller_watches_open", nil); v != 0 {
			return fmt.Errorf("watches open after the watch ended: %v, want 0", v)
		}
		return nil
	})

	// Refused requests count by route and code; the token they carried appears nowhere.
	const badToken = "not-a-token-but-a-secret-0123456789"
	if _, err := s.Join.WithToken(badToken).ListNetworks(ctx); err == nil {
		t.Fatal("a bad token listed the networks")
	}
	if _, err := h.CreateNetwork(ctx, api.Network{Name: "m", Subnet: "10.46.0.0/24"}); err == nil {
		t.Fatal("a host token created a network")
	}
	if v := metric(t, reg, "ov_controller_http_requests_total", map[string]string{"route": "GET /v1/networks", "code": "401"}); v != 1 {
		t.Errorf("GET /v1/networks answered 401: %v, want 1", v)
	}
	if v := metric(t, reg, "ov_controller_http_requests_total", map[string]string{"route": "POST /v1/networks", "code": "401"}); v != 1 {
		t.Errorf("POST /v1/networks by a host token answered 401: %v, want 1", v)
	}
	text, _ := scrape(t, reg)
	for _, secret := range []string{badToken, adminToken, joinToken, hostJoin.Token} {
		if strings.Contains(text, secret) {
			t.Errorf("the metrics show a token: %q", secret)
		}
	}
}

// lookup returns one figure of a scrape, -1 when it is not exposed (yet).
func lookup(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	_, s := scrape(t, reg)
	if v, ok := testutil.MetricValue(s, name, labels); ok {
		return v
	}
	return -1
}

func mustSamples(t *testing.T, reg *prometheus.Registry) []testutil.Sample {
	t.Helper()
	_, s := scrape(t, reg)
	return s
}

// TestMetricsOptional: without a registry nothing is registered anywhere, and two controllers in
// one process can each have their own.
func TestMetricsOptional(t *testing.T) {
	e := storetest.Embedded(t, true)
	startController(t, []string{e.ClientURL()}, 5*time.Second)
	a, b := prometheus.NewRegistry(), prometheus.NewRegistry()
	startControllerWith(t, []string{e.ClientURL()}, 5*time.Second, func(c *controller.Config) { c.Metrics = a })
	startControllerWith(t, []string{e.ClientURL()}, 5*time.Second, func(c *controller.Config) { c.Metrics = b })
	if v := metric(t, a, "ov_controller_watches_open", nil); v != 0 {
		t.Errorf("watches open: %v", v)
	}
	metric(t, b, "ov_controller_watches_open", nil)
}
