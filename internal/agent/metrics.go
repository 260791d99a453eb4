package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovnet/ov/api"
)

// The agent's container metrics (docs/metrics.md), registered with Config.Metrics, a registry of
// the process's choosing (never the global default one); nil: no metrics, and every method below
// is a no-op on a nil *metrics.
type metrics struct {
	a      *Agent
	create prometheus.Histogram
	start  prometheus.Histogram
}

var containersDesc = prometheus.NewDesc("ov_agent_containers",
	"Containers on this host by state (created, running, restarting, exited, unknown).", []string{"state"}, nil)

func newMetrics(reg prometheus.Registerer, a *Agent) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	buckets := []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &metrics{
		a: a,
		create: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ov_agent_container_create_seconds",
			Help: "Time to create a container (name, image, rootfs, network attach, shim), up to its being ready to start.", Buckets: buckets}),
		start: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ov_agent_container_start_seconds",
			Help: "Time from a start request to the container's process running.", Buckets: buckets}),
	}
	for _, c := range []prometheus.Collector{m.create, m.start, containersCollector{a}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) created(took time.Duration) {
	if m != nil {
		m.create.Observe(took.Seconds())
	}
}

func (m *metrics) started(took time.Duration) {
	if m != nil {
		m.start.Observe(took.Seconds())
	}
}

// containersCollector counts the containers by state when scraped.
type containersCollector struct{ a *Agent }

func (c containersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- containersDesc }

func (c containersCollector) Collect(ch chan<- prometheus.Metric) {
	n := map[string]int{api.StateCreated: 0, api.StateRunning: 0, api.StateRestarting: 0, api.StateExited: 0}
	for _, ct := range c.a.List(context.Background(), true) {
		n[ct.State.Status]++
	}
	for state, v := range n {
		ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, float64(v), state)
	}
}
