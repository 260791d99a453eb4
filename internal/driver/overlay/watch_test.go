package overlay

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ovnet/ov/api"
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
