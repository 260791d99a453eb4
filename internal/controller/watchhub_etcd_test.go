package controller_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/testutil"
)

// TestWatchStreamsShareOneEtcdWatch: 30 hosts watching the same network cost etcd no watcher of
// their own (the controller's hub serves them all from its one watch of every endpoint), and each
// still gets every event. Without the hub (controller.DisableWatchHub) etcd holds 30 more watchers
// and the test fails.
func TestWatchStreamsShareOneEtcdWatch(t *testing.T) {
	s, e := embeddedController(t)
	ctx := context.Background()
	if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "n", Subnet: "10.48.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	const streams = 30
	// The controller's own list-watches (the cache's five kinds and the hub) open as it starts:
	// count from when they all have.
	var before float64
	testutil.Eventually(t, 30*time.Second, func() error {
		if before = storetest.Metric(t, e, "etcd_debugging_mvcc_watcher_total"); before < 6 {
			return fmt.Errorf("%v etcd watchers: the controller's own 6 are not all open yet", before)
		}
		return nil
	})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var snapshots, puts atomic.Int64
	for i := range streams {
		h := registerHost(t, s, fmt.Sprintf("h%d", i), fmt.Sprintf("192.168.76.%d", i+1))
		go func() {
			_ = h.WatchEndpoints(wctx, "n", 0, func(ev api.EndpointEvent) error {
				switch ev.Type {
				case api.EventSnapshot:
					snapshots.Add(1)
				case api.EventPut:
					puts.Add(1)
				}
				return nil
			})
		}()
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := snapshots.Load(); n != streams {
			return fmt.Errorf("%d of %d streams have their snapshot", n, streams)
		}
		return nil
	})
	h := registerHost(t, s, "writer", "192.168.77.1")
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "n", Host: "writer", Container: "a"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := puts.Load(); n != streams {
			return fmt.Errorf("%d of %d streams got the new endpoint", n, streams)
		}
		return nil
	})
	after := storetest.Metric(t, e, "etcd_debugging_mvcc_watcher_total")
	t.Logf("etcd watchers: %v before the %d streams, %v with them", before, streams, after)
	if after-before > 2 { // registration and the host records may add one or two of the controller's own
		t.Fatalf("etcd watchers went from %v to %v with %d streams: each stream has a watch of its own", before, after, streams)
	}
}

// TestWatchWithoutHubStillWorks: the watch of a stream's own (the hub's fallback, used when a client
// resumes from a revision the hub has not reached) behaves as the hub does.
func TestWatchWithoutHubStillWorks(t *testing.T) {
	defer controller.DisableWatchHub()()
	TestWatchReconnects(t)
}
