package controller_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/testutil"
)

// hostEvents records the events of a host watch as text, per network.
type hostEvents struct {
	mu   sync.Mutex
	got  map[string][]string
	revs map[string]int64 // the revision each network has in full (where a resume starts)
}

func newHostEvents() *hostEvents {
	return &hostEvents{got: map[string][]string{}, revs: map[string]int64{}}
}

func (e *hostEvents) apply(network string, ev api.EndpointEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ev.Network != network {
		return fmt.Errorf("event %+v delivered for network %q", ev, network)
	}
	s := ev.Type
	switch ev.Type {
	case api.EventSnapshot:
		s = fmt.Sprintf("snapshot%v", ips(ev.Endpoints))
	case api.EventPut, api.EventDelete:
		s += " " + ev.Endpoint.IP
	}
	if ev.Type != api.EventProgress || len(e.got[network]) == 0 || e.got[network][len(e.got[network])-1] != "progress" {
		e.got[network] = append(e.got[network], s) // heartbeats in a row count once
	}
	if ev.Type == api.EventSnapshot || ev.Type == api.EventProgress || ev.Last {
		e.revs[network] = ev.Revision
	}
	return nil
}

// expect waits until the events of network are want.
func (e *hostEvents) expect(t *testing.T, network string, want ...string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if !cmp.Equal(e.got[network], want) {
			return fmt.Errorf("network %s: %s", network, cmp.Diff(want, e.got[network]))
		}
		return nil
	})
}

// expectChanges is expect without the progress events (how many heartbeats arrive depends on timing).
func (e *hostEvents) expectChanges(t *testing.T, network string, want ...string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		got := []string{}
		for _, s := range e.got[network] {
			if s != "progress" {
				got = append(got, s)
			}
		}
		if !cmp.Equal(got, want) {
			return fmt.Errorf("network %s: %s", network, cmp.Diff(want, got))
		}
		return nil
	})
}

func etcdURL(t *testing.T) string {
	t.Helper()
	return storetest.Embedded(t, true).ClientURL()
}

func (e *hostEvents) reset() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = map[string][]string{}
	out := map[string]int64{}
	for n, r := range e.revs {
		out[n] = r
	}
	return out
}

func createNetworks(t *testing.T, s *server, subnets map[string]string) {
	t.Helper()
	for name, subnet := range subnets {
		if _, err := s.Admin.CreateNetwork(context.Background(), api.Network{Name: name, Subnet: subnet}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHostWatch: one host stream carries several networks, each event naming its network: a snapshot
// per network, then changes; resumed with each network's revision, it gets per network exactly the
// missed events and a progress event at once (the heartbeat is an hour here), also for a network
// that missed nothing; after a broken connection it resumes by itself without a second snapshot.
func TestHostWatch(t *testing.T) {
	for _, hub := range []bool{true, false} {
		t.Run(fmt.Sprintf("hub=%v", hub), func(t *testing.T) {
			if !hub {
				defer controller.DisableWatchHub()()
			}
			testHostWatch(t, hub)
		})
	}
}

func testHostWatch(t *testing.T, hub bool) {
	e := etcdURL(t)
	s := startControllerWith(t, []string{e}, 5*time.Second, func(c *controller.Config) { c.WatchHeartbeat = time.Hour })
	ctx := context.Background()
	createNetworks(t, s, map[string]string{"a": "10.61.0.0/24", "b": "10.62.0.0/24", "c": "10.63.0.0/24"})
	h := registerHost(t, s, "h", "192.168.80.1")
	ev := newHostEvents()
	watch := func(revs map[string]int64) (stop func()) {
		wctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel) // also when the test fails before stop
		done := make(chan error, 1)
		go func() { done <- h.WatchHost(wctx, revs, ev.apply) }()
		return func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("WatchHost = %v, want canceled", err)
			}
		}
	}
	stop := watch(map[string]int64{"a": 0, "b": 0})
	ev.expect(t, "a", "snapshot[]")
	ev.expect(t, "b", "snapshot[]")
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "a", Host: "h", Container: "x"}); err != nil {
		t.Fatal(err)
	}
	ev.expect(t, "a", "snapshot[]", "put 10.61.0.2")
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "b", Host: "h", Container: "y"}); err != nil {
		t.Fatal(err)
	}
	ev.expect(t, "b", "snapshot[]", "put 10.62.0.2")
	stop()

	// Away: a changes, b does not; c is new to the stream. (Another stream shows when the
	// controller's shared watch has the change: a stream opened before resumes at once.)
	other := newHostEvents()
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	go func() { _ = s.Admin.WatchHost(octx, map[string]int64{"a": 0}, other.apply) }()
	other.expect(t, "a", "snapshot[10.61.0.2]")
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "a", Host: "h", Container: "z"}); err != nil {
		t.Fatal(err)
	}
	other.expect(t, "a", "snapshot[10.61.0.2]", "put 10.61.0.3")
	revs := ev.reset()
	revs["c"] = 0
	stop = watch(revs)
	if hub { // the shared watch had the change when the stream opened (other got it): progress after it
		ev.expect(t, "a", "put 10.61.0.3", "progress")
	} else { // the cache (the catch-up target) may not have the change yet: progress before or after it
		ev.expectChanges(t, "a", "put 10.61.0.3")
	}
	ev.expect(t, "b", "progress")
	ev.expect(t, "c", "snapshot[]")
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "c", Host: "h", Container: "v"}); err != nil {
		t.Fatal(err)
	}
	ev.expectChanges(t, "c", "snapshot[]", "put 10.63.0.2")

	s.HTTP.CloseClientConnections() // the stream breaks; the client resumes per network
	if err := h.Release(ctx, "a", "h", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "c", Host: "h", Container: "w"}); err != nil {
		t.Fatal(err)
	}
	ev.expectChanges(t, "a", "put 10.61.0.3", "delete 10.61.0.2")
	ev.expectChanges(t, "c", "snapshot[]", "put 10.63.0.2", "put 10.63.0.3")
	stop()
}

// TestHostWatchRefusals: a malformed list is 400 and an unknown network 404 naming it, before
// anything streams; the client tells the unknown network (*client.UnknownNetworkError) from a
// controller without the route (client.ErrNoHostWatch).
func TestHostWatchRefusals(t *testing.T) {
	s, _ := embeddedController(t)
	createNetworks(t, s, map[string]string{"a": "10.64.0.0/24"})
	many := make([]string, 1025)
	for i := range many {
		many[i] = fmt.Sprintf("n%d", i)
	}
	for _, c := range []struct{ name, query, want string }{
		{"no watch", "networks=a", "watch=true"},
		{"no networks", "watch=true", "no networks given"},
		{"empty name", "watch=true&networks=a,", "names no network"},
		{"bad revision", "watch=true&networks=a:x", `revision \"x\" is not a non-negative integer`},
		{"negative revision", "watch=true&networks=a:-1", `revision \"-1\" is not a non-negative integer`},
		{"twice", "watch=true&networks=a:1,a:2", "named twice"},
		{"too many", "watch=true&networks=" + strings.Join(many, ","), "more than the 1024"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body, _ := rawGet(t, s.URL+"/v1/endpoints?"+c.query)
			if status != http.StatusBadRequest || !strings.Contains(body, c.want) {
				t.Fatalf("answer %d %s, want 400 saying %q", status, body, c.want)
			}
		})
	}
	status, body, hdr := rawGet(t, s.URL+"/v1/endpoints?watch=true&networks=a:0,nope:3")
	if status != http.StatusNotFound || !strings.Contains(body, `network \"nope\" does not exist`) || hdr.Get("Ov-Unknown-Network") != "nope" {
		t.Fatalf("unknown network: %d %s (header %q), want 404 naming nope", status, body, hdr.Get("Ov-Unknown-Network"))
	}
	err := s.Admin.WatchHost(context.Background(), map[string]int64{"a": 0, "nope": 0}, func(string, api.EndpointEvent) error { return nil })
	var unknown *client.UnknownNetworkError
	if !errors.As(err, &unknown) || unknown.Network != "nope" || errors.Is(err, client.ErrNoHostWatch) {
		t.Fatalf("WatchHost with an unknown network = %v, want an UnknownNetworkError naming nope", err)
	}
}

func rawGet(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestHostWatchNetworkRemoved: a network removed while a host stream carries it ends only its part
// (one removed event); the others go on; when the last one goes, WatchHost returns nil.
func TestHostWatchNetworkRemoved(t *testing.T) {
	s, _ := embeddedController(t) // 200 ms heartbeat: the stream notices the removal within it
	ctx := context.Background()
	createNetworks(t, s, map[string]string{"a": "10.65.0.0/24", "b": "10.66.0.0/24"})
	h := registerHost(t, s, "h", "192.168.81.1")
	ev := newHostEvents()
	done := make(chan error, 1)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	go func() { done <- h.WatchHost(wctx, map[string]int64{"a": 0, "b": 0}, ev.apply) }()
	ev.expect(t, "b", "snapshot[]", "progress")
	if err := s.Admin.DeleteNetwork(ctx, "b", false); err != nil {
		t.Fatal(err)
	}
	ev.expect(t, "b", "snapshot[]", "progress", "removed")
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "a", Host: "h", Container: "x"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		if !strings.Contains(strings.Join(ev.got["a"], ","), "put 10.65.0.2") {
			return fmt.Errorf("network a after b's removal: %v, want its put", ev.got["a"])
		}
		return nil
	})
	if err := h.Release(ctx, "a", "h", "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Admin.DeleteNetwork(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WatchHost after every network was removed = %v, want nil", err)
	}
}

// TestHostWatchIsOneStream: a host stream of many networks counts once against MaxWatchesPerToken
// (here 1): the host's next stream is refused with 429.
func TestHostWatchIsOneStream(t *testing.T) {
	e := etcdURL(t)
	s := startControllerWith(t, []string{e}, 5*time.Second, func(c *controller.Config) { c.MaxWatchesPerToken = 1 })
	ctx := context.Background()
	nets := map[string]string{}
	revs := map[string]int64{}
	for i := range 5 {
		nets[fmt.Sprintf("n%d", i)] = fmt.Sprintf("10.67.%d.0/24", i)
		revs[fmt.Sprintf("n%d", i)] = 0
	}
	createNetworks(t, s, nets)
	ev := newHostEvents()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = s.Admin.WatchHost(wctx, revs, ev.apply) }()
	for n := range nets {
		ev.expect(t, n, "snapshot[]", "progress")
	}
	status, body, _ := rawGet(t, s.URL+"/v1/networks/n0/endpoints?watch=true")
	if status != http.StatusTooManyRequests {
		t.Fatalf("a second stream of the token: %d %s, want 429 (the host stream of 5 networks is one stream of the cap of 1)", status, body)
	}
}
