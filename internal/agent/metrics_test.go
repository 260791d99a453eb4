package agent

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/testutil"
)

func scrapeAgent(t *testing.T, reg *prometheus.Registry) []testutil.Sample {
	t.Helper()
	_, s := testutil.Scrape(t, reg)
	return s
}

// The containers gauge follows the agent's containers by state, and the create and start
// histograms count what Create and Start report.
func TestContainerMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := &Agent{containers: map[string]*container{}}
	m, err := newMetrics(reg, a)
	if err != nil {
		t.Fatal(err)
	}
	add := func(id, state string) {
		a.containers[id] = &container{rec: api.Container{ID: id, State: api.ContainerState{Status: state}}}
	}
	want := func(state string, n float64) {
		t.Helper()
		if v, ok := testutil.MetricValue(scrapeAgent(t, reg), "ov_agent_containers", map[string]string{"state": state}); !ok || v != n {
			t.Errorf("ov_agent_containers{state=%q} = %v (exposed %v), want %v", state, v, ok, n)
		}
	}
	want(api.StateRunning, 0)
	add("a", api.StateRunning)
	add("b", api.StateCreated)
	add("c", api.StateRunning)
	want(api.StateRunning, 2)
	want(api.StateCreated, 1)
	want(api.StateExited, 0)
	m.started(30 * time.Millisecond)
	m.created(200 * time.Millisecond)
	s := scrapeAgent(t, reg)
	if v, _ := testutil.MetricValue(s, "ov_agent_container_start_seconds_count", nil); v != 1 {
		t.Errorf("start latency observations: %v, want 1", v)
	}
	if v, _ := testutil.MetricValue(s, "ov_agent_container_create_seconds_count", nil); v != 1 {
		t.Errorf("create latency observations: %v, want 1", v)
	}
	var none *metrics // no registry: no metrics, and no panic
	none.started(time.Second)
	if m, err := newMetrics(nil, a); m != nil || err != nil {
		t.Errorf("newMetrics(nil) = %v, %v", m, err)
	}
}
