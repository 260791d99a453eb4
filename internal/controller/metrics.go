package controller

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// The controller's Prometheus metrics (docs/metrics.md). They are registered with Config.Metrics, a
// registry of the process's choosing (never the global default one), so that a test or a simulator
// can run several controllers in one process; nil means no metrics, and every method below is a no-op
// on a nil *metrics. No label or value carries a token: labels are network and host names, route
// patterns, status codes and outcome names.
type metrics struct {
	c *Controller

	allocations   *prometheus.CounterVec   // network, outcome
	allocDuration prometheus.Histogram     // every allocation, whatever its outcome
	allocRetries  *prometheus.CounterVec   // reason: taken, stale
	etcdDuration  *prometheus.HistogramVec // op
	etcdErrors    *prometheus.CounterVec   // op
	etcdTxns      *prometheus.CounterVec   // result: succeeded, failed_compare
	watchesOpen   prometheus.Gauge
	eventsSent    *prometheus.CounterVec   // type
	requests      *prometheus.CounterVec   // route, code
	reqDuration   *prometheus.HistogramVec // route

	mu      sync.Mutex
	streams map[*watchStream]struct{} // open endpoint watch streams, for the lag
}

// watchStream is one open endpoint watch stream, as the lag collector sees it: a network's stream, or
// a host stream of many networks (watchmux.go).
type watchStream struct {
	m   *metrics
	who string // the host (or "admin", "join") holding the stream
	mu  sync.Mutex
	// sent is, per network of the stream, the last revision sent in full (the client resumes from it:
	// what it has applied).
	sent map[string]int64
}

var (
	lagDesc = prometheus.NewDesc("ov_controller_watch_lag_revisions",
		"Per host: the largest difference, over its open endpoint watch streams, between the network's latest endpoint revision known to this controller and the last revision sent to the host in full.",
		[]string{"host"}, nil)
	lagMaxDesc = prometheus.NewDesc("ov_controller_watch_lag_max_revisions",
		"The largest watch lag of any open endpoint watch stream of this controller, in revisions.", nil, nil)
)

func newMetrics(reg prometheus.Registerer, c *Controller) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	m := &metrics{
		c: c,
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ov_controller_allocations_total",
			Help: "Address allocations answered, by network and outcome (created, existing, or the error class: conflict, exhausted, not_found, unavailable, ...)."}, []string{"network", "outcome"}),
		allocDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ov_controller_allocation_duration_seconds",
			Help: "Time to answer an address allocation, whatever its outcome.", Buckets: latency}),
		allocRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ov_controller_allocation_retries_total",
			Help: "Allocation attempts repeated: the candidate address was taken meanwhile (taken), or the cached network or host was stale (stale)."}, []string{"reason"}),
		etcdDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ov_controller_etcd_request_duration_seconds",
			Help: "Round-trip time of the controller's etcd key-value requests, by kind (get, put, delete, txn, compact).", Buckets: latency}, []string{"op"}),
		etcdErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ov_controller_etcd_request_errors_total",
			Help: "etcd key-value requests that failed (unreachable, timed out, refused), by kind."}, []string{"op"}),
		etcdTxns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ov_controller_etcd_txns_total",
			Help: "etcd transactions committed, by result: succeeded, or failed_compare (a conflict: another writer changed a compared key first)."}, []string{"result"}),
		watchesOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ov_controller_watches_open",
			Help: "Endpoint watch streams open on this controller (an agent holds one for all the overlay networks it serves; an agent older than the host stream, one per network)."}),
		eventsSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ov_controller_watch_events_sent_total",
			Help: "Endpoint events written to watch streams, by type (put, delete, snapshot, progress)."}, []string{"type"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ov_controller_http_requests_total",
			Help: "API requests answered, by route pattern and status code."}, []string{"route", "code"}),
		reqDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ov_controller_http_request_duration_seconds",
			Help: "Time to answer an API request, by route pattern (watch streams excluded: they last as long as the agent).", Buckets: latency}, []string{"route"}),
		streams: map[*watchStream]struct{}{},
	}
	for _, col := range []prometheus.Collector{m.allocations, m.allocDuration, m.allocRetries, m.etcdDuration, m.etcdErrors,
		m.etcdTxns, m.watchesOpen, m.eventsSent, m.requests, m.reqDuration, lagCollector{m}} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Allocate gives the endpoint an address: the requested one (ep.IP) or the next free one. It is
// idempotent per owner (network, host, container): the owner's current endpoint comes back, with
// created == false. (allocateAddr does it; this counts it.)
func (c *Controller) Allocate(ctx context.Context, ep api.Endpoint) (api.Endpoint, bool, error) {
	start := time.Now()
	out, created, err := c.allocateAddr(ctx, ep)
	if m := c.metrics; m != nil {
		outcome := "existing"
		switch {
		case err != nil:
			outcome = errdefs.Code(err)
		case created:
			outcome = "created"
		}
		// Only names of networks that exist become labels: a caller cannot make series by inventing
		// names. Past these outcomes the network was found (in the cache or in etcd).
		network := "(unknown)"
		switch _, cached := c.cache.network(ep.Network); {
		case cached, outcome == "created", outcome == "existing", outcome == "conflict", outcome == "exhausted":
			network = ep.Network
		}
		m.allocations.WithLabelValues(network, outcome).Inc()
		m.allocDuration.Observe(time.Since(start).Seconds())
	}
	return out, created, err
}

// retry counts an allocation attempt repeated for reason.
func (m *metrics) retry(reason string) {
	if m != nil {
		m.allocRetries.WithLabelValues(reason).Inc()
	}
}

// EtcdRequest and EtcdTxn make metrics a store.Observer.
func (m *metrics) EtcdRequest(op string, took time.Duration, err error) {
	m.etcdDuration.WithLabelValues(op).Observe(took.Seconds())
	if err != nil && !errors.Is(err, context.Canceled) {
		m.etcdErrors.WithLabelValues(op).Inc()
	}
}

func (m *metrics) EtcdTxn(succeeded bool) {
	result := "succeeded"
	if !succeeded {
		result = "failed_compare"
	}
	m.etcdTxns.WithLabelValues(result).Inc()
}

// watchOpened counts a new endpoint watch stream of p on network, resuming from fromRev (what the
// client has applied); call closed on the result when it ends.
func (m *metrics) watchOpened(p principal, network string, fromRev int64) *watchStream {
	return m.hostWatchOpened(p, map[string]int64{network: fromRev})
}

// hostWatchOpened counts a new endpoint watch stream of p on the networks of revs, each resuming from
// its revision: one stream, whatever the number of networks.
func (m *metrics) hostWatchOpened(p principal, revs map[string]int64) *watchStream {
	if m == nil {
		return nil
	}
	who := p.host
	switch p.role {
	case roleAdmin:
		who = "admin"
	case roleJoin:
		who = "join"
	}
	ws := &watchStream{m: m, who: who, sent: make(map[string]int64, len(revs))}
	for n, rev := range revs {
		ws.sent[n] = rev
	}
	m.mu.Lock()
	m.streams[ws] = struct{}{}
	m.mu.Unlock()
	m.watchesOpen.Inc()
	return ws
}

func (ws *watchStream) closed() {
	if ws == nil {
		return
	}
	ws.m.mu.Lock()
	delete(ws.m.streams, ws)
	ws.m.mu.Unlock()
	ws.m.watchesOpen.Dec()
}

// wrote counts an event written to the stream (of ev.Network; of the stream's network when the event
// names none); a snapshot, a progress event or the last event of a revision completes that revision.
func (ws *watchStream) wrote(ev api.EndpointEvent) {
	if ws == nil {
		return
	}
	ws.m.eventsSent.WithLabelValues(string(ev.Type)).Inc()
	if ev.Type == api.EventSnapshot || ev.Type == api.EventProgress || ev.Last {
		ws.mu.Lock()
		network := ev.Network
		if network == "" && len(ws.sent) == 1 {
			for n := range ws.sent {
				network = n
			}
		}
		if _, ok := ws.sent[network]; ok {
			ws.sent[network] = ev.Revision
		}
		ws.mu.Unlock()
	}
}

// left drops network from a host stream (removed from the cluster): no lag is counted for it.
func (ws *watchStream) left(network string) {
	if ws == nil {
		return
	}
	ws.mu.Lock()
	delete(ws.sent, network)
	ws.mu.Unlock()
}

// lagCollector computes the watch lag of every open stream when scraped: one gauge per host (the
// hosts holding streams: as many labels as hosts) and the maximum.
type lagCollector struct{ m *metrics }

func (l lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc; ch <- lagMaxDesc }

func (l lagCollector) Collect(ch chan<- prometheus.Metric) {
	l.m.mu.Lock()
	streams := make([]*watchStream, 0, len(l.m.streams))
	for ws := range l.m.streams {
		streams = append(streams, ws)
	}
	l.m.mu.Unlock()
	byHost := map[string]int64{}
	var most int64
	for _, ws := range streams {
		ws.mu.Lock()
		lag := int64(0)
		for network, sent := range ws.sent {
			if rev := l.m.c.cache.endpointRevision(network); sent > 0 && rev > sent {
				lag = max(lag, rev-sent)
			}
		}
		ws.mu.Unlock()
		byHost[ws.who] = max(byHost[ws.who], lag)
		most = max(most, lag)
	}
	for host, lag := range byHost {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag), host)
	}
	ch <- prometheus.MustNewConstMetric(lagMaxDesc, prometheus.GaugeValue, float64(most))
}

// instrument counts and times the requests h answers by route pattern (the mux's, never the raw
// path: no names, no tokens) and status code.
func (m *metrics) instrument(h http.Handler) http.Handler {
	if m == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		route := r.Pattern // set by the ServeMux h is
		switch {
		case route == "" || route == "/":
			route = "other"
		case (route == "GET /v1/networks/{name}/endpoints" || route == "GET /v1/endpoints") && r.URL.Query().Has("watch"):
			route += " (watch)"
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		m.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		if sw.status != http.StatusOK || !strings.HasSuffix(route, " (watch)") {
			m.reqDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}
	})
}

// statusWriter remembers the status code; Unwrap lets http.NewResponseController reach the
// connection's deadlines and Flush.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
