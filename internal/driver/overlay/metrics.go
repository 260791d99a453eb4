package overlay

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovnet/ov/internal/vxlan"
)

// Metrics are the overlay driver's Prometheus metrics on one host (docs/metrics.md): its data plane's
// reconciles, repairs and programmed entries, gossip membership and whether the controller answers.
// NewMetrics registers them with a registry of the caller's (never the global default one): a
// simulator running many hosts in one process gives each its own registry (or one registry wrapped
// per host with prometheus.WrapRegistererWith), or none. A nil *Metrics is valid and records nothing.
type Metrics struct {
	reg        prometheus.Registerer
	reconciles prometheus.Counter
	partial    prometheus.Counter
	failed     prometheus.Counter
	duration   prometheus.Histogram
	changes    prometheus.Counter
	repairs    prometheus.Counter
	reachable  prometheus.Gauge
	lastOK     prometheus.Gauge
}

var (
	endpointsDesc = prometheus.NewDesc("ov_agent_overlay_endpoints",
		"Local containers programmed on each overlay network this host serves (at the last reconcile).", []string{"network"}, nil)
	peersDesc = prometheus.NewDesc("ov_agent_overlay_peers",
		"Remote endpoints programmed (a neighbour and an FDB entry each) on each overlay network this host serves.", []string{"network"}, nil)
	revisionDesc = prometheus.NewDesc("ov_agent_overlay_watch_revision",
		"The controller revision of each network's endpoints this host has applied in full (where its watch resumes).", []string{"network"}, nil)
	membersDesc = prometheus.NewDesc("ov_agent_gossip_members",
		"Hosts gossip knows, by state: alive; suspect (gossip calls it dead but its kernel still answers: its entries are kept); dead (its entries are withdrawn).", []string{"state"}, nil)
)

// NewMetrics makes the overlay metrics and registers them with reg; nil reg: no metrics (nil, nil).
// Give the result to Config.Metrics, and its ObserveReconcile to vxlan.Config.OnReconcile.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &Metrics{
		reg: reg,
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{Name: "ov_agent_overlay_reconciles_total",
			Help: "Reconciles of the overlay data plane (at start, on every change, periodically and after errors)."}),
		partial: prometheus.NewCounter(prometheus.CounterOpts{Name: "ov_agent_overlay_reconciles_partial_total",
			Help: "Reconciles (among ov_agent_overlay_reconciles_total) of the networks a watch event or a kernel notification changed, alone: each costs those networks' peers, not every network's."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "ov_agent_overlay_reconcile_errors_total",
			Help: "Reconciles of the overlay data plane that failed (kernel or iptables errors; retried with backoff)."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ov_agent_overlay_reconcile_duration_seconds",
			Help: "Time one reconcile of the overlay data plane takes.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Name: "ov_agent_overlay_kernel_changes_total",
			Help: "Kernel and firewall changes the overlay reconciles made (links, addresses, routes, neighbour and FDB entries, rules), repairs included."}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{Name: "ov_agent_overlay_kernel_repairs_total",
			Help: "Kernel and firewall changes that repaired drift: entries deleted or changed behind ov's back, found and set right although the desired state had not changed."}),
		reachable: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ov_agent_controller_reachable",
			Help: "1 when the controller answered the agent's last registration or heartbeat, 0 when it did not."}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ov_agent_controller_last_success_timestamp_seconds",
			Help: "Unix time of the controller's last successful answer to a registration or heartbeat (0: never)."}),
	}
	for _, c := range []prometheus.Collector{m.reconciles, m.partial, m.failed, m.duration, m.changes, m.repairs, m.reachable, m.lastOK} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveReconcile records one reconcile of the data plane (vxlan.Config.OnReconcile).
func (m *Metrics) ObserveReconcile(r vxlan.Reconciled) {
	if m == nil {
		return
	}
	m.reconciles.Inc()
	if r.Partial {
		m.partial.Inc()
	}
	if r.Err != nil {
		m.failed.Inc()
	}
	m.duration.Observe(r.Took.Seconds())
	m.changes.Add(float64(r.Changes))
	m.repairs.Add(float64(r.Repairs))
}

// controllerAnswered records whether the controller answered a registration or heartbeat.
func (m *Metrics) controllerAnswered(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.reachable.Set(0)
		return
	}
	m.reachable.Set(1)
	m.lastOK.Set(float64(time.Now().UnixNano()) / 1e9)
}

// attach registers the figures read from d when scraped.
func (m *Metrics) attach(d *Driver) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(driverCollector{d})
}

// driverCollector reads the driver's programmed entries, watch revisions and gossip view when scraped.
type driverCollector struct{ d *Driver }

func (c driverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{endpointsDesc, peersDesc, revisionDesc, membersDesc} {
		ch <- d
	}
}

func (c driverCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	if r, ok := d.dp.(statusReporter); ok {
		for _, n := range r.Status().Networks {
			ch <- prometheus.MustNewConstMetric(endpointsDesc, prometheus.GaugeValue, float64(n.Endpoints), n.Name)
			ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(n.Peers), n.Name)
		}
	}
	d.mu.Lock()
	for name, ns := range d.st.Networks {
		ch <- prometheus.MustNewConstMetric(revisionDesc, prometheus.GaugeValue, float64(ns.Revision), name)
	}
	d.mu.Unlock()
	states := map[string]int{"alive": 0, "suspect": 0, "dead": 0}
	for _, mb := range d.cfg.Members.Members() {
		switch {
		case !mb.Alive:
			states["dead"]++
		case !mb.Agent:
			states["suspect"]++
		default:
			states["alive"]++
		}
	}
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(membersDesc, prometheus.GaugeValue, float64(n), s)
	}
}
