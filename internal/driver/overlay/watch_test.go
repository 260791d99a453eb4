package overlay

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/testutil"
)

// TestSavedRevisionIsAppliedInFull: the revision the driver saves (and resumes its watch from after a
// crash) is one whose events it applied in full: not the revision of a transaction it has applied in
// part (resuming after it would skip the rest of the transaction), and a snapshot's revision even when
// it goes back (the controller's store was restored from a backup). The state file says the same after
// a restart.
func TestSavedRevisionIsAppliedInFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overlay.json")
	h := newHarness(t, newFakeController(), path)
	d := h.d
	d.mu.Lock()
	d.st.Networks["n"] = &netState{Network: api.Network{Name: "n", Driver: api.DriverOverlay}}
	d.mu.Unlock()
	ep := func(i int) *api.Endpoint {
		return &api.Endpoint{Network: "n", Host: "host2", Container: fmt.Sprint("c", i), IP: fmt.Sprint("10.9.0.", i)}
	}
	var snap []api.Endpoint
	for i := range 5 {
		snap = append(snap, *ep(i + 2))
	}
	steps := []struct {
		name    string
		ev      api.EndpointEvent
		rev     int64
		remotes int
	}{
		{"snapshot", api.EndpointEvent{Type: api.EventSnapshot, Endpoints: snap, Revision: 10}, 10, 5},
		{"first delete of a transaction", api.EndpointEvent{Type: api.EventDelete, Endpoint: ep(2), Revision: 12}, 10, 4},
		{"second delete", api.EndpointEvent{Type: api.EventDelete, Endpoint: ep(3), Revision: 12}, 10, 3},
		{"last delete", api.EndpointEvent{Type: api.EventDelete, Endpoint: ep(4), Revision: 12, Last: true}, 12, 2},
		{"put of a later transaction", api.EndpointEvent{Type: api.EventPut, Endpoint: ep(9), Revision: 13}, 12, 3},
		{"progress", api.EndpointEvent{Type: api.EventProgress, Revision: 15}, 15, 3},
		{"snapshot of a restored store", api.EndpointEvent{Type: api.EventSnapshot, Endpoints: snap[:1], Revision: 7}, 7, 1},
	}
	for _, s := range steps {
		d.apply("n", s.ev)
		d.mu.Lock()
		rev, n := d.st.Networks["n"].Revision, len(d.st.Networks["n"].Remote)
		d.mu.Unlock()
		if rev != s.rev || n != s.remotes {
			t.Fatalf("after %s: saved revision %d with %d remote endpoints, want %d with %d", s.name, rev, n, s.rev, s.remotes)
		}
	}
	h.stop()
	st, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Networks["n"].Revision; got != 7 {
		t.Fatalf("the state file resumes the watch from %d, want 7 (the restored store's snapshot)", got)
	}
}

// TestSnapshotWithoutLocalEndpointReclaimsIt: after the controller's store is restored from a backup taken
// before a container started, the store no longer holds that container's address. The watch's snapshot
// shows it; the driver claims the address again for the running container (the address it has), so the
// controller cannot hand it to another container.
func TestSnapshotWithoutLocalEndpointReclaimsIt(t *testing.T) {
	ctl := newFakeController()
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	ctx := context.Background()
	ep, err := h.d.Attach(ctx, driver.AttachRequest{Network: "front", Container: "c1", Netns: "/run/ov/netns/c1"})
	if err != nil {
		t.Fatal(err)
	}
	ctl.mu.Lock()
	delete(ctl.endpoints, "front/host1/c1") // the restored store never heard of c1
	ctl.mu.Unlock()
	h.d.apply("front", api.EndpointEvent{Type: api.EventSnapshot, Revision: 1_000_000_001})
	testutil.Eventually(t, 5*time.Second, func() error {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		got, ok := ctl.endpoints["front/host1/c1"]
		if !ok || got.IP != ep.IP {
			return fmt.Errorf("the controller holds %+v for c1 (present: %v), want its address %s claimed again", got, ok, ep.IP)
		}
		return nil
	})
	// A detached container is not claimed again.
	if err := h.d.Detach(ctx, "front", "c1"); err != nil {
		t.Fatal(err)
	}
	h.d.apply("front", api.EndpointEvent{Type: api.EventSnapshot, Revision: 1_000_000_002})
	time.Sleep(100 * time.Millisecond)
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if got, ok := ctl.endpoints["front/host1/c1"]; ok {
		t.Fatalf("a detached container's address was claimed again: %+v", got)
	}
}

// TestLostAllocateAnswerIsReleased: an allocation whose answer is lost (a partition, a timeout) may
// have been made; the attach fails, and the driver releases it by owner, so that the address is not
// held by a container that never existed (found by TestChaos, seed 53445130).
func TestLostAllocateAnswerIsReleased(t *testing.T) {
	ctl := newFakeController()
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	ctl.mu.Lock()
	ctl.lose = 1
	ctl.mu.Unlock()
	if _, err := h.d.Attach(context.Background(), driver.AttachRequest{Network: "front", Container: "c1", Netns: "/run/ov/netns/c1"}); err == nil {
		t.Fatal("attach succeeded although the controller's answer was lost")
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		if ep, ok := ctl.endpoints["front/host1/c1"]; ok {
			return fmt.Errorf("the controller still holds %s for c1, whose attach failed", ep.IP)
		}
		return nil
	})
}
