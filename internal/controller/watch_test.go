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

// TestWatchEndsWithNetwork: a watch of a network that is removed ends with ErrNotFound (the stream
// closes and the reconnect is refused), so an agent learns the network is gone.
func TestWatchEndsWithNetwork(t *testing.T) {
	s, _ := embeddedController(t)
	ctx := context.Background()
	if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "n", Subnet: "10.47.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	h := registerHost(t, s, "h", "192.168.75.1")
	if _, err := h.Allocate(ctx, api.Endpoint{Network: "n", Host: "h", Container: "a"}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	var deletes []string
	go func() {
		done <- h.WatchEndpoints(wctx, "n", 0, func(ev api.EndpointEvent) error {
			if ev.Type == api.EventSnapshot {
				go func() { _ = s.Admin.DeleteNetwork(ctx, "n", true) }()
			}
			if ev.Type == api.EventDelete {
				deletes = append(deletes, ev.Endpoint.IP)
			}
			return nil
		})
	}()
	err := <-done
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("watch of a removed network ended with %v, want not found", err)
	}
	if !cmp.Equal(deletes, []string{"10.47.0.2"}) {
		t.Fatalf("delete events before the end: %v, want the forced release of 10.47.0.2", deletes)
	}
}
