package controller_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/testutil"
)

// TestWatchReconnects: when the connection of a watch breaks (controller restart, network trouble),
// client.WatchEndpoints reconnects by itself and resumes from the last revision: the changes made while
// it was away arrive, in order, without a second snapshot.
func TestWatchReconnects(t *testing.T) {
	s, _ := embeddedController(t)
	ctx := context.Background()
	if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "n", Subnet: "10.44.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	h := registerHost(t, s, "h", "192.168.73.1")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var got []string
	go func() {
		_ = h.WatchEndpoints(wctx, "n", 0, func(ev api.EndpointEvent) error {
			mu.Lock()
			defer mu.Unlock()
			switch ev.Type {
			case api.EventSnapshot:
				got = append(got, fmt.Sprintf("snapshot%v", ips(ev.Endpoints)))
			case api.EventPut, api.EventDelete:
				got = append(got, ev.Type+" "+ev.Endpoint.IP)
			}
			return nil
		})
	}()
	expect := func(want ...string) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if !cmp.Equal(got, want) {
				return fmt.Errorf("events: %s", cmp.Diff(want, got))
			}
			return nil
		})
	}
	expect("snapshot[]")
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "n", Host: "h", Container: "a"}); err != nil {
		t.Fatal(err)
	}
	expect("snapshot[]", "put 10.44.0.2")

	s.HTTP.CloseClientConnections() // the stream breaks
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "n", Host: "h", Container: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(ctx, "n", "h", "a"); err != nil {
		t.Fatal(err)
	}
	expect("snapshot[]", "put 10.44.0.2", "put 10.44.0.3", "delete 10.44.0.2")
}
