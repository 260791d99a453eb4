package overlay

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
)

// TestHeartbeatsReadTheHostListOnlyWhenDue: every heartbeat used to read the whole host list, which
// costs the controller hosts^2 reads per heartbeat period; now heartbeats read it once per
// HostListEvery, and a gossip change still reads it at once.
func TestHeartbeatsReadTheHostListOnlyWhenDue(t *testing.T) {
	ctl := newFakeController()
	h := startAgent(t, Config{
		Host: "host1", Address: netip.MustParseAddr("192.168.77.11"), StatePath: filepath.Join(t.TempDir(), "overlay.json"),
		Connect: ctl.connect, JoinToken: "join", RequestTimeout: time.Second,
		Heartbeat: 20 * time.Millisecond, HostListEvery: time.Hour,
	})
	testutil.Eventually(t, 5*time.Second, func() error { _, err := h.d.ready(); return err })
	reads := func() int {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		return ctl.listHosts
	}
	r0 := reads()
	time.Sleep(500 * time.Millisecond) // about 25 heartbeats
	if n := reads() - r0; n > 1 {
		t.Fatalf("%d heartbeats read the host list %d times; want it read only when HostListEvery (1h) is due", 25, n)
	}
	h.mem.changes <- struct{}{} // gossip saw a change: the list is read at once
	testutil.Eventually(t, 2*time.Second, func() error {
		if reads() == r0 {
			return fmt.Errorf("a gossip change did not read the host list")
		}
		return nil
	})
}
