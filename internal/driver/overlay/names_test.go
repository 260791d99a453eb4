package overlay

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/dns"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/testutil"
)

func (c tokenClient) SetEndpointNames(ctx context.Context, network, host, container string, names []string) (api.Endpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return api.Endpoint{}, err
	}
	if c.token != "ovh."+host {
		return api.Endpoint{}, fmt.Errorf("not this host's endpoint: %w", errdefs.ErrUnauthorized)
	}
	k := network + "/" + host + "/" + container
	ep, ok := c.endpoints[k]
	if !ok {
		return api.Endpoint{}, fmt.Errorf("no endpoint %s: %w", k, errdefs.ErrNotFound)
	}
	ep.Names = names
	c.endpoints[k] = ep
	return ep, nil
}

func (f *fakeController) names(key string) ([]string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ep, ok := f.endpoints[key]
	return ep.Names, ok
}

// namesHarness is newHarness with a name table.
func namesHarness(t *testing.T, ctl *fakeController, path string, table *dns.Table) *harness {
	t.Helper()
	h := startAgent(t, Config{
		Host: "host1", Address: netip.MustParseAddr("192.168.77.11"), StatePath: path,
		Connect: ctl.connect, JoinToken: "join", Names: table,
		RequestTimeout: time.Second, Heartbeat: 50 * time.Millisecond, TokenRefusalWindow: 200 * time.Millisecond,
	})
	h.ctl = ctl
	testutil.Eventually(t, 5*time.Second, func() error { _, err := h.d.ready(); return err })
	return h
}

// TestNamesFollowTheWatch: the names of endpoints are in the table exactly while the driver's state
// holds them (snapshot, put, delete, a stopped container's empty names), on the network whose watch
// brought them only; this host's come from its local endpoints (not from the stream); junk from the
// stream is dropped; and a restart with the controller down answers from the state file.
func TestNamesFollowTheWatch(t *testing.T) {
	ctl := newFakeController()
	ctl.hosts["host2"] = api.Host{Name: "host2", Address: "192.168.77.12"}
	path := filepath.Join(t.TempDir(), "overlay.json")
	table := dns.NewTable()
	h := namesHarness(t, ctl, path, table)
	ctx := context.Background()
	if _, err := h.d.Attach(ctx, driver.AttachRequest{Network: "front", Container: "c1", Netns: "/run/ov/netns/c1", Names: []string{"web1"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := ctl.names("front/host1/c1"); !slices.Equal(got, []string{"web1"}) {
		t.Fatalf("names allocated with the endpoint: %q", got)
	}
	h.d.mu.Lock()
	h.d.st.Networks["back"] = &netState{Network: api.Network{Name: "back", Driver: api.DriverOverlay}}
	h.d.mu.Unlock()

	ep := func(host, c, ip string, names ...string) api.Endpoint {
		return api.Endpoint{Network: "front", Host: host, Container: c, IP: ip, Names: names}
	}
	put := func(network string, e api.Endpoint) func() {
		return func() { h.d.apply(network, api.EndpointEvent{Type: api.EventPut, Endpoint: &e, Revision: 20}) }
	}
	type res map[string][]string // name -> addresses on front
	lookup := func(tb *dns.Table, names ...string) res {
		out := res{}
		for _, n := range names {
			for _, a := range tb.Lookup([]string{"front"}, n) {
				out[n] = append(out[n], a.String())
			}
		}
		return out
	}
	asked := []string{"web1", "api", "apihost", "db", "ok", "bad name", "intruder"}
	steps := []struct {
		name string
		do   func()
		want res
	}{
		{"snapshot", func() {
			h.d.apply("front", api.EndpointEvent{Type: api.EventSnapshot, Revision: 10, Endpoints: []api.Endpoint{
				ep("host1", "c1", "10.20.0.2", "web1"), ep("host2", "c2", "10.20.0.3", "api", "apihost"), ep("host2", "c3", "10.20.0.4"),
			}})
		}, res{"web1": {"10.20.0.2"}, "api": {"10.20.0.3"}, "apihost": {"10.20.0.3"}}},
		{"c3 started: its names arrive", put("front", ep("host2", "c3", "10.20.0.4", "db")), res{"web1": {"10.20.0.2"}, "api": {"10.20.0.3"}, "apihost": {"10.20.0.3"}, "db": {"10.20.0.4"}}},
		{"c2 stopped: its names are emptied", put("front", ep("host2", "c2", "10.20.0.3")), res{"web1": {"10.20.0.2"}, "db": {"10.20.0.4"}}},
		{"another network's endpoint stays there", put("back", api.Endpoint{Network: "front", Host: "host2", Container: "c9", IP: "10.30.0.9", Names: []string{"intruder"}}), res{"web1": {"10.20.0.2"}, "db": {"10.20.0.4"}}},
		{"junk dropped", put("front", ep("host2", "c4", "10.20.0.5", "ok", "bad name")), res{"web1": {"10.20.0.2"}, "db": {"10.20.0.4"}, "ok": {"10.20.0.5"}}},
		{"c3 released", func() {
			h.d.apply("front", api.EndpointEvent{Type: api.EventDelete, Revision: 21, Endpoint: &api.Endpoint{Network: "front", Host: "host2", Container: "c3", IP: "10.20.0.4"}})
		}, res{"web1": {"10.20.0.2"}, "ok": {"10.20.0.5"}}},
		{"c2 started again", put("front", ep("host2", "c2", "10.20.0.3", "api")), res{"web1": {"10.20.0.2"}, "api": {"10.20.0.3"}, "ok": {"10.20.0.5"}}},
		{"a re-list replaces everything", func() {
			h.d.apply("front", api.EndpointEvent{Type: api.EventSnapshot, Revision: 30, Endpoints: []api.Endpoint{
				ep("host1", "c1", "10.20.0.2", "web1"), ep("host2", "c2", "10.20.0.3", "api"),
			}})
		}, res{"web1": {"10.20.0.2"}, "api": {"10.20.0.3"}}},
	}
	// expect waits until the table holds want (runNames writes in the background); it writes the
	// whole state first, so that a name the state should not give is there to be seen.
	expect := func(step string, want res) {
		t.Helper()
		h.d.writeNames(h.d.namesOf(nil))
		testutil.Eventually(t, 5*time.Second, func() error {
			if got := lookup(table, asked...); !equalRes(got, want) {
				return fmt.Errorf("%s: names on front = %v, want %v", step, got, want)
			}
			return nil
		})
	}
	for _, s := range steps {
		s.do()
		expect(s.name, s.want)
	}
	if got := table.Lookup([]string{"back"}, "intruder"); len(got) != 1 || got[0] != netip.MustParseAddr("10.30.0.9") {
		t.Fatalf("c9 on back: %v", got)
	}
	// The agent stops c1: its names leave the table at once (and the controller, in the background).
	if err := h.d.SetNames(ctx, "front", "c1", nil); err != nil {
		t.Fatal(err)
	}
	if got := lookup(table, asked...); !equalRes(got, res{"api": {"10.20.0.3"}}) { // at once
		t.Fatalf("names after c1 stopped: %v", got)
	}
	// A stream that still carries c1's old names (the controller has not heard yet) does not bring
	// them back: this host's endpoints are named by its own state.
	h.d.apply("front", api.EndpointEvent{Type: api.EventSnapshot, Revision: 31, Endpoints: []api.Endpoint{
		ep("host1", "c1", "10.20.0.2", "web1"), ep("host2", "c2", "10.20.0.3", "api"),
	}})
	put("front", ep("host1", "c1", "10.20.0.2", "web1"))()
	expect("a stale stream of c1", res{"api": {"10.20.0.3"}})

	// Restarted with the controller down: the state file has the names.
	h.stop()
	ctl.mu.Lock()
	ctl.down = true
	ctl.mu.Unlock()
	fresh := dns.NewTable()
	cfg := h.d.cfg
	cfg.Names = fresh
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}
	d2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := lookup(fresh, asked...); !equalRes(got, res{"api": {"10.20.0.3"}}) {
		t.Fatalf("names after a restart with the controller down: %v", got)
	}
	// Names from the state file are pending (a name it lacks is "try again", not NXDOMAIN) until the
	// controller's watch confirms the network: events alone do not, a progress event (caught up) does.
	if !fresh.IsPending("front") {
		t.Fatalf("front is not pending after a restart from the state file")
	}
	d2.apply("front", api.EndpointEvent{Type: api.EventPut, Revision: 32, Last: true, Endpoint: &api.Endpoint{Network: "front", Host: "host2", Container: "c5", IP: "10.20.0.6", Names: []string{"new"}}})
	d2.writeNames(d2.namesOf(nil))
	if !fresh.IsPending("front") || len(fresh.Lookup([]string{"front"}, "new")) != 1 {
		t.Fatalf("after a replayed event: pending %v, new = %v; want still pending, new resolving", fresh.IsPending("front"), fresh.Lookup([]string{"front"}, "new"))
	}
	d2.apply("front", api.EndpointEvent{Type: api.EventProgress, Revision: 32})
	d2.writeNames(d2.namesOf(nil))
	if fresh.IsPending("front") {
		t.Fatalf("front still pending after the watch caught up")
	}
}

func equalRes(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestSetNamesReachesTheController: the names of a stopped container are emptied on the controller
// and come back when it starts; with the controller down the change waits and goes with a heartbeat.
func TestSetNamesReachesTheController(t *testing.T) {
	ctl := newFakeController()
	h := namesHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"), dns.NewTable())
	ctx := context.Background()
	if _, err := h.d.Attach(ctx, driver.AttachRequest{Network: "front", Container: "c1", Netns: "/run/ov/netns/c1", Names: []string{"web"}}); err != nil {
		t.Fatal(err)
	}
	want := func(names []string) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, func() error {
			if got, _ := ctl.names("front/host1/c1"); !slices.Equal(got, names) {
				return fmt.Errorf("controller holds names %q, want %q", got, names)
			}
			return nil
		})
	}
	if err := h.d.SetNames(ctx, "front", "c1", nil); err != nil {
		t.Fatal(err)
	}
	want(nil)
	ctl.mu.Lock()
	ctl.down = true
	ctl.mu.Unlock()
	if err := h.d.SetNames(ctx, "front", "c1", []string{"web"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	want(nil)
	ctl.mu.Lock()
	ctl.down = false
	ctl.mu.Unlock()
	want([]string{"web"})
	testutil.Eventually(t, 5*time.Second, func() error {
		h.d.mu.Lock()
		defer h.d.mu.Unlock()
		if h.d.st.Networks["front"].Local["c1"].NamesPending {
			return fmt.Errorf("still pending")
		}
		return nil
	})
	// A container not attached there is ignored.
	if err := h.d.SetNames(ctx, "front", "nosuch", []string{"x"}); err != nil {
		t.Fatal(err)
	}
}
