package store_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/errdefs"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		key  string
		kind store.KeyKind
		name string
		ip   string
	}{
		{"/ov/v1/networks/front", store.KindNetwork, "front", ""},
		{"/ov/v1/hosts/h1", store.KindHost, "h1", ""},
		{"/ov/v1/endpoints/front/10.1.0.2", store.KindEndpoint, "front", "10.1.0.2"},
		{"/ov/v1/cursors/front", store.KindCursor, "front", ""},
		{"/ov/v1/owners/front/h1/c1", store.KindOther, "", ""},
		{"/ov/v1/endpoints/front/garbage", store.KindOther, "", ""},
		{"/elsewhere", store.KindOther, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			kind, name, ip := store.ParseKey(tc.key)
			var want netip.Addr
			if tc.ip != "" {
				want = netip.MustParseAddr(tc.ip)
			}
			if kind != tc.kind || name != tc.name || ip != want {
				t.Fatalf("got %v %q %v", kind, name, ip)
			}
		})
	}
}

func open(t *testing.T) *store.Store {
	t.Helper()
	e := storetest.Embedded(t, true)
	s, err := store.Open(store.Config{Endpoints: []string{e.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var pools = store.Pools{Subnet: netip.MustParsePrefix("10.128.0.0/9"), SubnetBits: 24, VNIMin: 4096, VNIMax: 1<<24 - 1}

// TestWatchResumeAfterCompaction: a watch resumed from a revision etcd has compacted starts with a
// fresh snapshot of the current endpoints, then carries on with changes.
func TestWatchResumeAfterCompaction(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	n, err := s.CreateNetwork(ctx, api.Network{Name: "n", Driver: api.DriverOverlay, Subnet: "10.60.0.0/24"}, pools)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.CreateHost(ctx, store.Host{Host: api.Host{Name: "h", Address: "192.168.80.1"}})
	if err != nil {
		t.Fatal(err)
	}
	first, _, err := s.Allocate(ctx, n, h, api.Endpoint{Container: "a"}, netip.MustParseAddr("10.60.0.10"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Allocate(ctx, n, h, api.Endpoint{Container: "b"}, netip.MustParseAddr("10.60.0.11"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, "n", "h", "a"); err != nil {
		t.Fatal(err)
	}
	_, rev, err := s.ListEndpoints(ctx, "n")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var got []api.EndpointEvent
	errDone := errors.New("done")
	err = s.WatchEndpoints(wctx, "n", first.Revision, func(ev api.EndpointEvent) error {
		if ev.Type == api.EventProgress {
			return nil
		}
		got = append(got, ev)
		if len(got) == 1 { // a change after the snapshot
			go func() {
				_, _, _ = s.Allocate(ctx, n, h, api.Endpoint{Container: "c"}, netip.MustParseAddr("10.60.0.12"), true)
			}()
		}
		if len(got) == 2 {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatal(err)
	}
	if got[0].Type != api.EventSnapshot || len(got[0].Endpoints) != 1 || got[0].Endpoints[0].Container != "b" {
		t.Fatalf("first event after compaction = %+v, want a snapshot holding only b", got[0])
	}
	if got[1].Type != api.EventPut || got[1].Endpoint.Container != "c" {
		t.Fatalf("second event = %+v, want put c", got[1])
	}
}

// TestAllocateGuards: an allocation compares the network's create revision and the host record's
// revision it was planned against, so it cannot land in a network or for a host that was removed (and
// recreated), nor carry the address of a host that moved.
func TestAllocateGuards(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	n, err := s.CreateNetwork(ctx, api.Network{Name: "n", Driver: api.DriverOverlay, Subnet: "10.61.0.0/24"}, pools)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.CreateHost(ctx, store.Host{Host: api.Host{Name: "h", Address: "192.168.80.1"}})
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("10.61.0.5")
	if err := s.DeleteNetwork(ctx, "n", false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Allocate(ctx, n, h, api.Endpoint{Container: "a"}, ip, true); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("allocate in a removed network: %v, want not found", err)
	}
	if _, err := s.CreateNetwork(ctx, api.Network{Name: "n", Driver: api.DriverOverlay, Subnet: "10.61.0.0/24"}, pools); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Allocate(ctx, n, h, api.Endpoint{Container: "a"}, ip, true); !errors.Is(err, store.ErrStale) {
		t.Fatalf("allocate against the old incarnation: %v, want stale", err)
	}
	n2, _ := s.GetNetwork(ctx, "n")
	moved := h
	moved.Address = "192.168.80.99"
	if _, err := s.UpdateHost(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Allocate(ctx, n2, h, api.Endpoint{Container: "a"}, ip, true); !errors.Is(err, store.ErrStale) {
		t.Fatalf("allocate with the host's old address: %v, want stale (the VTEP would be wrong)", err)
	}
	if _, err := s.DeleteHost(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Allocate(ctx, n2, h, api.Endpoint{Container: "a"}, ip, true); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("allocate for a removed host: %v, want not found", err)
	}
	eps, _, err := s.ListEndpoints(ctx, "n")
	if err != nil || len(eps) != 0 {
		t.Fatalf("endpoints: %+v, %v; want none", eps, err)
	}
}
