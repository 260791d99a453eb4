package overlay

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/testutil"
)

// TestWatchEventsCoalesceStateWrites: a burst of watch events (endpoints created elsewhere on a
// network this host serves) costs a few writes of the state file, not one encoding and fsync of the
// whole state per event, and the file ends up holding every event with its revision.
func TestWatchEventsCoalesceStateWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overlay.json")
	h := newHarness(t, newFakeController(), path)
	d := h.d
	d.mu.Lock()
	d.st.Networks["n"] = &netState{Network: api.Network{Name: "n", Driver: api.DriverOverlay}}
	gen0 := d.gen
	d.mu.Unlock()
	const events = 300
	for i := range events {
		d.apply("n", api.EndpointEvent{Type: api.EventPut, Revision: int64(100 + i), Last: true,
			Endpoint: &api.Endpoint{Network: "n", Host: "host2", Container: fmt.Sprint("c", i), IP: fmt.Sprintf("10.9.%d.%d", i/250, 1+i%250)}})
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		st, err := loadState(path)
		if err != nil {
			return err
		}
		if ns := st.Networks["n"]; ns == nil || len(ns.Remote) != events || ns.Revision != 100+events-1 {
			return fmt.Errorf("the state file does not hold every event yet")
		}
		return nil
	})
	d.mu.Lock()
	writes := d.gen - gen0
	d.mu.Unlock()
	if writes > events/10 {
		t.Fatalf("%d watch events made %d state file writes; want them coalesced (at most %d)", events, writes, events/10)
	}
}
