package controller_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/testutil"
)

// TestAPI drives the whole API through the Go client against a controller with embedded etcd.
func TestAPI(t *testing.T) {
	s, _ := embeddedController(t)
	ctx := context.Background()

	// Networks: explicit subnet, and one chosen from the default pool.
	front, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "front", Driver: api.DriverOverlay, Subnet: "10.1.0.0/16", Labels: map[string]string{"tier": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	if front.Gateway != "10.1.0.1" || front.VNI != 4096 || front.Revision == 0 || front.ID == "" {
		t.Fatalf("front = %+v; want gateway 10.1.0.1, VNI 4096, a revision and an ID", front)
	}
	auto, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	if auto.Driver != api.DriverOverlay || auto.Subnet != "10.128.0.0/24" || auto.Gateway != "10.128.0.1" || auto.VNI != 4097 {
		t.Fatalf("auto = %+v; want overlay 10.128.0.0/24 gw .1 VNI 4097", auto)
	}
	got, err := s.Admin.GetNetwork(ctx, "front")
	if err != nil || !cmp.Equal(got, front) {
		t.Fatalf("get front: %v %s", err, cmp.Diff(front, got))
	}
	list, err := s.Admin.ListNetworks(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "auto" || list[1].Name != "front" {
		t.Fatalf("list = %+v, %v", list, err)
	}

	// Update: compare-and-swap on the revision.
	upd := front
	upd.Labels, upd.MTU, upd.Internal = map[string]string{"tier": "edge"}, 1400, true
	front2, err := s.Admin.UpdateNetwork(ctx, upd)
	if err != nil || front2.MTU != 1400 || !front2.Internal || front2.Labels["tier"] != "edge" || front2.Revision <= front.Revision {
		t.Fatalf("update: %+v, %v", front2, err)
	}
	if _, err := s.Admin.UpdateNetwork(ctx, upd); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("update at a stale revision: %v, want conflict", err)
	}
	upd.Revision, upd.Subnet = 0, "10.9.0.0/16"
	if _, err := s.Admin.UpdateNetwork(ctx, upd); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("changing the subnet: %v, want invalid argument", err)
	}

	// Hosts register with the join token and get their own token.
	h1 := registerHost(t, s, "h1", "192.168.50.1")
	h2 := registerHost(t, s, "h2", "192.168.50.2")
	hosts, err := s.Admin.ListHosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[0].State != api.HostAlive || hosts[0].Token != "" {
		t.Fatalf("hosts = %+v, %v", hosts, err)
	}
	if _, err := h1.Heartbeat(ctx, "h1"); err != nil {
		t.Fatal(err)
	}

	// Start a watch before allocating: snapshot first, then changes.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var mu sync.Mutex
	var events []api.EndpointEvent
	watchDone := make(chan error, 1)
	snap := make(chan struct{})
	go func() {
		watchDone <- h2.WatchEndpoints(wctx, "front", 0, func(ev api.EndpointEvent) error {
			if ev.Type == api.EventSnapshot && len(events) == 0 {
				close(snap)
			}
			if ev.Type != api.EventProgress {
				mu.Lock()
				events = append(events, ev)
				mu.Unlock()
			}
			return nil
		})
	}()

	<-snap

	// Endpoints.
	e1, err := h1.Allocate(ctx, api.Endpoint{Network: "front", Host: "h1", Container: "c1"})
	if err != nil || e1.IP != "10.1.0.2" || e1.VTEP != "192.168.50.1" {
		t.Fatalf("allocate c1: %+v, %v; want 10.1.0.2 with VTEP 192.168.50.1", e1, err)
	}
	again, err := h1.Allocate(ctx, api.Endpoint{Network: "front", Host: "h1", Container: "c1"})
	if err != nil || again.IP != e1.IP {
		t.Fatalf("allocate c1 again: %+v, %v; want the same address", again, err)
	}
	e2, err := h2.Allocate(ctx, api.Endpoint{Network: "front", Host: "h2", Container: "c2", IP: "10.1.7.7"})
	if err != nil || e2.IP != "10.1.7.7" {
		t.Fatalf("allocate requested: %+v, %v", e2, err)
	}
	e3, err := h1.Allocate(ctx, api.Endpoint{Network: "front", Host: "h1", Container: "c3"})
	if err != nil || e3.IP != "10.1.0.3" {
		t.Fatalf("allocate c3: %+v, %v", e3, err)
	}
	if err := h1.Release(ctx, "front", "h1", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := h1.Release(ctx, "front", "h1", "c1"); err != nil {
		t.Fatalf("second release: %v, want no error", err)
	}
	e4, err := h1.Allocate(ctx, api.Endpoint{Network: "front", Host: "h1", Container: "c4"})
	if err != nil || e4.IP != "10.1.0.4" {
		t.Fatalf("allocate after release: %+v, %v; want 10.1.0.4 (a released address is not reused at once)", e4, err)
	}
	eps, rev, err := s.Admin.ListEndpoints(ctx, "front")
	if err != nil || rev == 0 {
		t.Fatal(err)
	}
	if got := ips(eps); !cmp.Equal(got, []string{"10.1.0.3", "10.1.0.4", "10.1.7.7"}) {
		t.Fatalf("endpoints = %v", got)
	}

	// The watch saw: snapshot (empty), put .2, put .7.7, put .3, delete .2, put .4.
	testutil.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, ev := range events {
			switch ev.Type {
			case api.EventSnapshot:
				got = append(got, fmt.Sprintf("snapshot%v", ips(ev.Endpoints)))
			default:
				got = append(got, ev.Type+" "+ev.Endpoint.IP)
			}
		}
		want := []string{"snapshot[]", "put 10.1.0.2", "put 10.1.7.7", "put 10.1.0.3", "delete 10.1.0.2", "put 10.1.0.4"}
		if !cmp.Equal(got, want) {
			return fmt.Errorf("events %s", cmp.Diff(want, got))
		}
		return nil
	})
	wcancel()
	if err := <-watchDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch ended with %v, want context.Canceled", err)
	}

	// Resume from a revision: only later changes, no snapshot.
	var resumed []api.EndpointEvent
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	_ = s.Admin.WatchEndpoints(rctx, "front", e3.Revision, func(ev api.EndpointEvent) error {
		if ev.Type != api.EventProgress {
			resumed = append(resumed, ev)
		}
		if len(resumed) == 2 {
			return errStop
		}
		return nil
	})
	if len(resumed) != 2 || resumed[0].Type != api.EventDelete || resumed[0].Endpoint.IP != "10.1.0.2" || resumed[1].Endpoint.IP != "10.1.0.4" {
		t.Fatalf("resumed events = %+v", resumed)
	}

	// Reconcile: h1 says it only has c4; c3 is released.
	released, err := h1.Reconcile(ctx, "h1", []api.Endpoint{{Network: "front", Container: "c4"}})
	if err != nil || len(released) != 1 || released[0].Container != "c3" || released[0].IP != "10.1.0.3" {
		t.Fatalf("reconcile: %+v, %v; want c3 released", released, err)
	}

	// Removing a network with endpoints is refused, unless forced.
	if err := s.Admin.DeleteNetwork(ctx, "front", false); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("delete network with endpoints: %v, want conflict", err)
	}

	// A host address change updates its endpoints' VTEP.
	if _, err := h2.RegisterHost(ctx, api.Host{Name: "h2", Address: "192.168.50.22"}); err != nil {
		t.Fatal(err)
	}
	eps, _, _ = s.Admin.ListEndpoints(ctx, "front")
	for _, e := range eps {
		if e.Host == "h2" && e.VTEP != "192.168.50.22" {
			t.Fatalf("endpoint %+v kept the old VTEP", e)
		}
	}

	// node rm releases everything the host held, and its token stops working.
	if err := s.Admin.RemoveHost(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	eps, _, _ = s.Admin.ListEndpoints(ctx, "front")
	if got := ips(eps); !cmp.Equal(got, []string{"10.1.0.4"}) {
		t.Fatalf("after node rm h2: endpoints %v, want only h1's 10.1.0.4", got)
	}
	// Tokens are checked against the controller's cache, which learns of the removal from its watch
	// within milliseconds (every write of the host is guarded in etcd regardless).
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, err := h2.ListNetworks(ctx); !errors.Is(err, errdefs.ErrUnauthorized) {
			return fmt.Errorf("removed host's token: %v, want unauthorized", err)
		}
		return nil
	})
	if _, err := h2.Allocate(ctx, api.Endpoint{Network: "front", Host: "h2", Container: "late"}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("allocate with a removed host's token: %v, want unauthorized", err)
	}
	if err := s.Admin.DeleteNetwork(ctx, "front", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.GetNetwork(ctx, "front"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("get deleted network: %v", err)
	}
	if got, _ := s.Admin.HostEndpoints(ctx, "h1"); len(got) != 0 {
		t.Fatalf("h1 still holds %+v after its network was removed", got)
	}
	// The freed subnet and a fresh VNI are available again; the VNI is not reused at once.
	again2, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "front2", Subnet: "10.1.0.0/16"})
	if err != nil || again2.VNI != 4098 {
		t.Fatalf("recreate: %+v, %v; want VNI 4098", again2, err)
	}
	if err := s.Admin.Health(ctx); err != nil {
		t.Fatal(err)
	}
}

var errStop = errors.New("stop")

func ips(eps []api.Endpoint) []string {
	out := []string{}
	for _, e := range eps {
		out = append(out, e.IP)
	}
	return out
}
