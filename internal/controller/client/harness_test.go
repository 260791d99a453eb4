package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/controllertest"
	"github.com/ovnet/ov/internal/testutil"
)

const (
	adminToken = "admin-token-0123456789"
	joinToken  = "join-token-0123456789ab"
)

func testLog() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("OV_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// ctlServer is one controller on etcd, served on a loopback test server.
type ctlServer struct {
	URL  string
	stop func()
}

// startCtl starts a controller on the etcd at etcdURL; it stops at the end of the test or at stop.
func startCtl(t testing.TB, etcdURL string) *ctlServer {
	t.Helper()
	s := controllertest.Start(t, controllertest.Config{Endpoints: []string{etcdURL}, AdminToken: adminToken, JoinToken: joinToken, Log: testLog()})
	return &ctlServer{URL: s.URL, stop: s.Stop}
}

func newClient(t testing.TB, url, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{URL: url, Token: token, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cutProxy forwards requests to a controller and cuts watch streams: after every k-th put or delete
// it had not forwarded before (0: never), it ends the stream there, as a broken connection would.
// With pauseOnCut it answers 503 after a cut until resumed (the controller is restarting).
type cutProxy struct {
	mu         sync.Mutex
	target     string
	k          int
	pauseOnCut bool
	paused     bool
	seen       map[string]bool
	fresh      int // events forwarded for the first time
	cuts       int
}

func (p *cutProxy) set(target string, k int, pauseOnCut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target, p.k, p.pauseOnCut, p.paused = target, k, pauseOnCut, false
	p.fresh, p.cuts = 0, 0
}

func (p *cutProxy) state() (paused bool, cuts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused, p.cuts
}

func (p *cutProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	target, paused := p.target, p.paused
	p.mu.Unlock()
	if paused {
		http.Error(w, "controller restarting", http.StatusServiceUnavailable)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if r.URL.Query().Get("watch") == "" || resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		_, _ = w.Write(append(sc.Bytes(), '\n'))
		w.(http.Flusher).Flush()
		if p.cut(sc.Bytes()) {
			return // the stream ends here
		}
	}
}

// cut counts one forwarded line and tells whether the stream ends after it.
func (p *cutProxy) cut(line []byte) bool {
	var ev api.EndpointEvent
	if json.Unmarshal(line, &ev) != nil || ev.Endpoint == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := fmt.Sprint(ev.Revision, ev.Type, ev.Endpoint.IP)
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	if p.seen[key] {
		return false
	}
	p.seen[key] = true
	p.fresh++
	if p.k == 0 || p.fresh%p.k != 0 {
		return false
	}
	p.cuts++
	if p.pauseOnCut {
		p.paused = true
	}
	return true
}

// watcher applies a watch to a table of endpoints the way the overlay driver does (keyed by host and
// container, a snapshot replaces everything) and tracks the last revision it has in full.
type watcher struct {
	mu    sync.Mutex
	eps   map[string]api.Endpoint
	rev   int64
	gone  int // deletes of endpoints it did not have
	snaps int // snapshots applied
	done  chan error
}

func startWatcher(t testing.TB, c *client.Client, network string) *watcher {
	t.Helper()
	w := &watcher{eps: map[string]api.Endpoint{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { w.done <- c.WatchEndpoints(ctx, network, 0, w.apply) }()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

func (w *watcher) apply(ev api.EndpointEvent) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev.Type {
	case api.EventSnapshot:
		w.eps = map[string]api.Endpoint{}
		for _, ep := range ev.Endpoints {
			w.eps[ep.Host+"/"+ep.Container] = ep
		}
		w.rev = ev.Revision
		w.snaps++
		return nil
	case api.EventPut:
		w.eps[ev.Endpoint.Host+"/"+ev.Endpoint.Container] = *ev.Endpoint
	case api.EventDelete:
		k := ev.Endpoint.Host + "/" + ev.Endpoint.Container
		if _, ok := w.eps[k]; !ok {
			w.gone++
		}
		delete(w.eps, k)
	}
	if ev.Type == api.EventProgress || ev.Last {
		w.rev = max(w.rev, ev.Revision)
	}
	return nil
}

func (w *watcher) snapshots() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.snaps
}

// table renders endpoints as sorted "host/container=ip" lines.
func table(eps []api.Endpoint) []string {
	out := make([]string, 0, len(eps))
	for _, ep := range eps {
		out = append(out, ep.Host+"/"+ep.Container+"="+ep.IP)
	}
	sort.Strings(out)
	return out
}

// diff waits until the watcher has everything up to the controller's current revision, then
// compares its table with the controller's and checks that no address appears twice in it. It
// returns "" when they agree.
func (w *watcher) diff(t testing.TB, admin *client.Client, network string) string {
	t.Helper()
	want, rev, err := admin.ListEndpoints(context.Background(), network)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.rev < rev {
			return fmt.Errorf("the watcher has revision %d in full, the controller is at %d", w.rev, rev)
		}
		return nil
	})
	w.mu.Lock()
	var got []api.Endpoint
	byIP := map[string][]string{}
	for k, ep := range w.eps {
		got = append(got, ep)
		byIP[ep.IP] = append(byIP[ep.IP], k)
	}
	w.mu.Unlock()
	var msgs []string
	if g, wt := table(got), table(want); strings.Join(g, " ") != strings.Join(wt, " ") {
		msgs = append(msgs, fmt.Sprintf("the watcher has %d endpoints, the controller %d: %s", len(g), len(wt), setDiff(wt, g)))
	}
	var dups []string
	for ip, ks := range byIP {
		if len(ks) > 1 {
			sort.Strings(ks)
			dups = append(dups, fmt.Sprintf("%s held by %v", ip, ks))
		}
	}
	if len(dups) > 0 {
		sort.Strings(dups)
		msgs = append(msgs, fmt.Sprintf("%d addresses have two peers in the watcher's table: %s", len(dups), short(dups)))
	}
	if w.gone > 0 {
		msgs = append(msgs, fmt.Sprintf("%d deletes of endpoints the watcher did not have (events delivered twice)", w.gone))
	}
	return strings.Join(msgs, "; ")
}

// short prints at most 3 items of s.
func short(s []string) string {
	if len(s) > 3 {
		return fmt.Sprintf("%v... (%d)", s[:3], len(s))
	}
	return fmt.Sprint(s)
}

// setDiff summarises what b lacks of a and has beyond it.
func setDiff(a, b []string) string {
	in := func(s []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[x] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var missing, extra []string
	for _, x := range a {
		if !mb[x] {
			missing = append(missing, x)
		}
	}
	for _, x := range b {
		if !ma[x] {
			extra = append(extra, x)
		}
	}
	return "missing " + short(missing) + ", stale " + short(extra)
}

var hostSeq int // distinct underlay addresses for the hosts of every cluster of the test binary

// cluster is a network with hosts on a controller reached through a cutProxy.
type cluster struct {
	admin *client.Client
	hosts []*client.Client
	names []string
}

// newCluster creates network (subnet) and registers n hosts, all through url.
func newCluster(t testing.TB, url, network, subnet string, n int) *cluster {
	t.Helper()
	ctx := context.Background()
	c := &cluster{admin: newClient(t, url, adminToken)}
	if _, err := c.admin.CreateNetwork(ctx, api.Network{Name: network, Subnet: subnet}); err != nil {
		t.Fatal(err)
	}
	join := newClient(t, url, joinToken)
	for i := range n {
		name := fmt.Sprintf("%s-h%d", network, i)
		hostSeq++
		h, err := join.RegisterHost(ctx, api.Host{Name: name, Address: fmt.Sprintf("192.168.90.%d", hostSeq)})
		if err != nil {
			t.Fatal(err)
		}
		c.hosts = append(c.hosts, join.WithToken(h.Token))
		c.names = append(c.names, name)
	}
	return c
}

// allocate gives count containers named prefix-i addresses, spread over the hosts; with ips, at
// those addresses.
func (c *cluster) allocate(t testing.TB, network, prefix string, count int, ips []netip.Addr) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	for i := range count {
		h := i % len(c.hosts)
		ep := api.Endpoint{Network: network, Host: c.names[h], Container: fmt.Sprintf("%s-%d", prefix, i)}
		if ips != nil {
			ep.IP = ips[i].String()
		}
		got, err := c.hosts[h].Allocate(context.Background(), ep)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, netip.MustParseAddr(got.IP))
	}
	return out
}

func httptestServer(t testing.TB, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(func() { s.CloseClientConnections(); s.Close() })
	return s.URL
}
