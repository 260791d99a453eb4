package client_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/testutil"
)

// releaseCase makes 100 endpoints on 4 hosts, watches them through a proxy that cuts the stream after
// every k-th new event, releases all 100 in one etcd transaction (one revision, 100 delete events),
// then hands the same addresses to 100 new containers, and returns how the watcher's table differs
// from the controller's after each step ("" when it never does).
func releaseCase(t *testing.T, etcdURL string, ctl *ctlServer, network, subnet string, k int) string {
	p := &cutProxy{}
	p.set(ctl.URL, 0, false)
	url := httptestServer(t, p)
	c := newCluster(t, url, network, subnet, 4)
	w := startWatcher(t, c.hosts[0], network)
	ips := c.allocate(t, network, "a", 100, nil)
	if d := w.diff(t, c.admin, network); d != "" {
		t.Fatalf("before any cut: %s", d)
	}
	p.set(ctl.URL, k, false)
	storetest.ReleaseAllInOneTxn(t, []string{etcdURL}, network)
	d1 := w.diff(t, c.admin, network)
	c.allocate(t, network, "b", 100, ips) // the same addresses, other containers
	d2 := w.diff(t, c.admin, network)
	if _, cuts := p.state(); cuts == 0 {
		t.Fatalf("the proxy never cut the stream")
	}
	if d1 == "" && d2 == "" {
		return ""
	}
	return fmt.Sprintf("after the release: %q; after handing the addresses out again: %q", d1, d2)
}

// TestWatchResumesInsideATransaction: a transaction that releases 100 addresses makes 100 events with
// one revision; whichever of them the stream breaks after, the client resumes without losing the rest
// (and without delivering any twice), so the agent's table ends equal to the controller's and never
// holds two peers with one address. With the old resume logic (from the revision of the last event
// delivered) the rest of the transaction is lost: the last case shows the test catches that.
func TestWatchResumesInsideATransaction(t *testing.T) {
	e := storetest.Embedded(t, true)
	ctl := startCtl(t, e.ClientURL())
	for i, k := range []int{7, 40, 99} {
		t.Run(fmt.Sprintf("cut every %d", k), func(t *testing.T) {
			if d := releaseCase(t, e.ClientURL(), ctl, fmt.Sprintf("cut%d", k), fmt.Sprintf("10.61.%d.0/24", i), k); d != "" {
				t.Fatal(d)
			}
		})
	}
	t.Run("old resume logic loses events", func(t *testing.T) {
		defer client.ResumeWithOldCursor()()
		d := releaseCase(t, e.ClientURL(), ctl, "old", "10.61.100.0/24", 40)
		if d == "" {
			t.Fatal("with the old resume logic the watcher still converged: the test cannot catch a watch that skips events")
		}
		t.Logf("old resume logic, as expected: %s", d)
	})
}

// TestWatchResumesAcrossControllerRestart: the stream breaks in the middle of a 100-address release,
// the controller restarts before the client can reconnect, and the new controller carries on from
// where the client stood: the watcher's table ends equal to the controller's.
func TestWatchResumesAcrossControllerRestart(t *testing.T) {
	e := storetest.Embedded(t, true)
	ctl := startCtl(t, e.ClientURL())
	p := &cutProxy{}
	p.set(ctl.URL, 0, false)
	url := httptestServer(t, p)
	const network = "restart"
	c := newCluster(t, url, network, "10.62.0.0/24", 4)
	w := startWatcher(t, c.hosts[0], network)
	c.allocate(t, network, "a", 100, nil)
	if d := w.diff(t, c.admin, network); d != "" {
		t.Fatalf("before the restart: %s", d)
	}
	p.set(ctl.URL, 37, true)
	storetest.ReleaseAllInOneTxn(t, []string{e.ClientURL()}, network)
	testutil.Eventually(t, 30*time.Second, func() error {
		if paused, _ := p.state(); !paused {
			return fmt.Errorf("the stream was not cut yet")
		}
		return nil
	})
	ctl.stop()
	ctl = startCtl(t, e.ClientURL())
	p.set(ctl.URL, 0, false)
	if d := w.diff(t, c.admin, network); d != "" {
		t.Fatalf("after the restart: %s", d)
	}
}
