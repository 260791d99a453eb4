package overlay

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/testutil"
)

// TestPruneForgetsUnknownContainers: an agent killed between attaching a container and writing its
// record (found by the chaos test, seed 134571912) restarts without the container. Prune, which the
// agent calls before Run, drops its endpoint: the registration reports only the containers the agent
// knows (so the controller releases the orphan's address) and the desired state has no trace of it
// (before, the data plane kept failing on its deleted namespace and the other hosts kept its entries).
// On a driver that has joined, Prune releases at once.
func TestPruneForgetsUnknownContainers(t *testing.T) {
	ctl := newFakeController()
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	ctx := context.Background()
	for _, c := range []string{"c1", "c2"} {
		if _, err := h.d.Attach(ctx, driver.AttachRequest{Network: "front", Container: c, Netns: "/ns/" + c}); err != nil {
			t.Fatal(err)
		}
	}
	h.stop() // the agent dies; c1's record was never written

	d, err := New(h.d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := any(d).(driver.Pruner) // how the agent finds it
	if !ok {
		t.Fatal("the overlay driver is no driver.Pruner: a restarted agent keeps the endpoints of containers it does not know")
	}
	if err := p.Prune(ctx, func(id string) bool { return id == "c2" }); err != nil {
		t.Fatal(err)
	}
	want := []string{"net front vni=4096 gw=10.20.0.1", "  local 10.20.0.3 eth0 c2"}
	if diff := cmp.Diff(want, render(d.desired())); diff != "" {
		t.Fatalf("desired state after the prune (-want +got):\n%s", diff)
	}
	ctl.mu.Lock()
	ctl.reports = nil
	ctl.mu.Unlock()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = d.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	testutil.Eventually(t, 5*time.Second, func() error { _, err := d.ready(); return err })
	ctl.mu.Lock()
	reports := ctl.reports
	ctl.mu.Unlock()
	if len(reports) != 1 || len(reports[0]) != 1 || reports[0][0].Container != "c2" || reports[0][0].IP != "10.20.0.3" {
		t.Fatalf("the restarted agent reported %v, want only c2 with 10.20.0.3", reports)
	}

	if err := p.Prune(ctx, func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if got := ctl.held(); len(got) != 1 || got[0] != "front/host1/c1=10.20.0.2" {
		t.Fatalf("held after pruning c2 on a joined driver: %v, want only c1's (released by the controller's reconcile, which the fake does not do)", got)
	}
}
