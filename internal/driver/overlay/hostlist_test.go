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

// TestHeartbeatsReadTheHostListWhenItsRevisionChanges: against a controller that reports the hosts
// revision, heartbeats read the list only when the revision changes (a host registered, moved or got a
// new key), not every HostListEvery: a quiet cluster costs the controller hosts / HostListSafetyEvery
// lists instead of hosts / 30 s.
func TestHeartbeatsReadTheHostListWhenItsRevisionChanges(t *testing.T) {
	ctl := newFakeController()
	h := startAgent(t, Config{
		Host: "host1", Address: netip.MustParseAddr("192.168.77.11"), StatePath: filepath.Join(t.TempDir(), "overlay.json"),
		Connect: ctl.connect, JoinToken: "join", RequestTimeout: time.Second,
		Heartbeat: 20 * time.Millisecond, HostListEvery: 20 * time.Millisecond, HostListSafetyEvery: time.Hour,
	})
	testutil.Eventually(t, 5*time.Second, func() error { _, err := h.d.ready(); return err })
	setRev := func(rev int64) {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		host := ctl.hosts["host1"]
		host.HostsRevision = rev
		ctl.hosts["host1"] = host
	}
	reads := func() int {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		return ctl.listHosts
	}
	setRev(7)
	time.Sleep(100 * time.Millisecond) // the first heartbeat that reports revision 7 reads the list
	r0 := reads()
	time.Sleep(500 * time.Millisecond) // about 25 heartbeats, each past HostListEvery
	if n := reads() - r0; n > 0 {
		t.Fatalf("25 heartbeats reporting an unchanged hosts revision read the host list %d times; want none (HostListSafetyEvery is 1h)", n)
	}
	setRev(9) // a host record changed: the next heartbeat reads the list once
	testutil.Eventually(t, 2*time.Second, func() error {
		if reads() == r0 {
			return fmt.Errorf("a new hosts revision did not read the host list")
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	if n := reads() - r0; n != 1 {
		t.Fatalf("a new hosts revision read the host list %d times; want once", n)
	}
}
