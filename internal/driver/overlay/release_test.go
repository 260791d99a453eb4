package overlay

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/driver"
)

// TestQueuedReleaseSparesARetriedAttach: an attach whose allocation answer is lost releases the
// allocation by owner; when that release fails too it waits for the next heartbeat. If the attach is
// retried and succeeds first, the queued release must not delete the new allocation (the container
// would keep an address every other host withdrew and the controller could hand out again).
func TestQueuedReleaseSparesARetriedAttach(t *testing.T) {
	ctl := newFakeController()
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	ctl.mu.Lock()
	ctl.lose, ctl.failRel = 1, 1
	ctl.mu.Unlock()
	req := driver.AttachRequest{Network: "front", Container: "c1", Netns: "/run/ov/netns/c1"}
	if _, err := h.d.Attach(context.Background(), req); err == nil {
		t.Fatal("attach succeeded although the controller's answer was lost")
	}
	ep, err := h.d.Attach(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // several heartbeats (50 ms)
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if got, ok := ctl.endpoints["front/host1/c1"]; !ok || got.IP != ep.IP {
		t.Fatalf("the controller holds %+v (present: %v) for c1 after the retried attach got %s; a queued release deleted it", got, ok, ep.IP)
	}
}

// TestReleaseInFlightSparesARetriedAttach: the same as above, when the heartbeat has already taken
// the queued release and is sending it as the attach is retried. The release must reach the
// controller before the attach allocates, or it deletes the new allocation.
func TestReleaseInFlightSparesARetriedAttach(t *testing.T) {
	ctl := newFakeController()
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	entered, unblock := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	ctl.mu.Lock()
	ctl.lose, ctl.failRel = 1, 1
	ctl.mu.Unlock()
	req := driver.AttachRequest{Network: "front", Container: "c1", Netns: "/run/ov/netns/c1"}
	if _, err := h.d.Attach(context.Background(), req); err == nil {
		t.Fatal("attach succeeded although the controller's answer was lost")
	}
	ctl.mu.Lock()
	ctl.onRelease = func() { // the heartbeat's release of the queue: hold it on its way
		once.Do(func() { entered <- struct{}{}; <-unblock })
	}
	ctl.mu.Unlock()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat sent the queued release")
	}
	type result struct {
		ip  string
		err error
	}
	res := make(chan result, 1)
	go func() {
		ep, err := h.d.Attach(context.Background(), req)
		res <- result{ep.IP, err}
	}()
	time.Sleep(300 * time.Millisecond) // without the ordering, the attach allocates meanwhile
	close(unblock)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	time.Sleep(200 * time.Millisecond)
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if got, ok := ctl.endpoints["front/host1/c1"]; !ok || got.IP != r.ip {
		t.Fatalf("the controller holds %+v (present: %v) for c1 after the retried attach got %s; the heartbeat's release in flight deleted it", got, ok, r.ip)
	}
}
