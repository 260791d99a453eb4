package controller

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/testutil"
)

// The watch lag of a host is the network's latest endpoint revision in the cache minus the last
// revision its stream sent in full; a half-sent revision does not count as sent, and a closed
// stream leaves no figure behind.
func TestWatchLag(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := &Controller{cache: newCache(nil)}
	m, err := newMetrics(reg, c)
	if err != nil {
		t.Fatal(err)
	}
	lag := func(host string) float64 {
		t.Helper()
		_, s := testutil.Scrape(t, reg)
		name, labels := "ov_controller_watch_lag_revisions", map[string]string{"host": host}
		if host == "" {
			name, labels = "ov_controller_watch_lag_max_revisions", nil
		}
		if v, ok := testutil.MetricValue(s, name, labels); ok {
			return v
		}
		return -1
	}
	endpoint := func(rev int64) {
		c.cache.mu.Lock()
		c.cache.put(store.Record{Kind: store.KindEndpoint, Name: "n", Revision: rev})
		c.cache.mu.Unlock()
	}
	ws := m.watchOpened(principal{role: roleHost, host: "h1"}, "n", 10) // resumed at 10: it has 10
	other := m.watchOpened(principal{role: roleHost, host: "h2"}, "n", 0)
	endpoint(10)
	if v := lag("h1"); v != 0 {
		t.Errorf("lag of a host that has everything: %v", v)
	}
	endpoint(14)
	if v := lag("h1"); v != 4 {
		t.Errorf("lag of a host 4 revisions behind: %v", v)
	}
	ws.wrote(api.EndpointEvent{Type: api.EventPut, Revision: 14}) // more of revision 14 may follow
	if v := lag("h1"); v != 4 {
		t.Errorf("lag after half of a revision: %v, want 4", v)
	}
	other.wrote(api.EndpointEvent{Type: api.EventSnapshot, Revision: 12})
	if v, max := lag("h2"), lag(""); v != 2 || max != 4 {
		t.Errorf("lag of h2 %v (want 2), max %v (want 4)", v, max)
	}
	ws.wrote(api.EndpointEvent{Type: api.EventPut, Revision: 14, Last: true})
	if v, max := lag("h1"), lag(""); v != 0 || max != 2 {
		t.Errorf("lag of h1 with revision 14 sent in full %v (want 0), max %v (want 2)", v, max)
	}
	ws.closed()
	if v := lag("h1"); v != -1 {
		t.Errorf("a closed stream still shows a lag: %v", v)
	}
}
