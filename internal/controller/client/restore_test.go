package client_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/testutil"
)

// startEtcd starts an embedded etcd in dir; it stops at the end of the test or at stop.
func startEtcd(t *testing.T, dir string) (url string, stop func()) {
	t.Helper()
	e, err := store.StartEmbedded(store.EmbedConfig{Dir: dir, UnsafeNoFsync: true, Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			e.Close()
		}
	}
	t.Cleanup(stop)
	return e.ClientURL(), stop
}

// TestRestoreFromBackup: state A (40 addresses) is snapshotted; then B: 20 of them are released and
// 20 other containers get addresses. The controller and its etcd stop, A is restored (a new data
// directory, the revision bumped), the controller starts on it. A watcher that followed all along
// (an agent) sees the store's revision go back or its history compacted, lists afresh and ends
// with A; the addresses the restored store hands out next (the ones B had handed out) are then
// held once in its table, not twice.
func TestRestoreFromBackup(t *testing.T) {
	for _, c := range []struct {
		name      string
		bump      int64
		compacted bool
	}{
		{"bumped and marked compacted", store.DefaultBumpRevision, true},
		{"revision behind the watchers", 1, false}, // as a restore without --bump-revision leaves it
	} {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			etcdURL, stopEtcd := startEtcd(t, filepath.Join(base, "etcd"))
			ctl := startCtl(t, etcdURL)
			p := &cutProxy{}
			p.set(ctl.URL, 0, false)
			url := httptestServer(t, p)
			const network = "backup"
			cl := newCluster(t, url, network, "10.63.0.0/24", 4)
			w := startWatcher(t, cl.hosts[0], network)
			cl.allocate(t, network, "a", 40, nil)
			if d := w.diff(t, cl.admin, network); d != "" {
				t.Fatalf("state A: %s", d)
			}
			stateA, _, err := cl.admin.ListEndpoints(context.Background(), network)
			if err != nil {
				t.Fatal(err)
			}
			snap := filepath.Join(base, "a.db")
			st, err := store.Open(store.Config{Endpoints: []string{etcdURL}, Log: testLog()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Snapshot(context.Background(), snap); err != nil {
				t.Fatal(err)
			}
			st.Close()

			for i := range 20 { // B
				if err := cl.hosts[i%4].Release(context.Background(), network, cl.names[i%4], fmt.Sprint("a-", i)); err != nil {
					t.Fatal(err)
				}
			}
			givenB := cl.allocate(t, network, "b", 20, nil)
			if d := w.diff(t, cl.admin, network); d != "" {
				t.Fatalf("state B: %s", d)
			}

			snaps := w.snapshots()
			p.set(ctl.URL, 0, true)
			p.mu.Lock()
			p.paused = true // the controller is down for the restore
			p.mu.Unlock()
			ctl.stop()
			stopEtcd()
			res, err := store.RestoreSnapshot(store.RestoreConfig{Snapshot: snap, Dir: filepath.Join(base, "etcd2"), BumpRevision: c.bump, MarkCompacted: c.compacted})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("restored revision %d as %d", res.Revision, res.Bumped)
			etcdURL, _ = startEtcd(t, filepath.Join(base, "etcd2"))
			ctl = startCtl(t, etcdURL)
			p.set(ctl.URL, 0, false)

			got, _, err := cl.admin.ListEndpoints(context.Background(), network)
			if err != nil {
				t.Fatal(err)
			}
			if a, g := fmt.Sprint(table(stateA)), fmt.Sprint(table(got)); a != g {
				t.Fatalf("the restored controller lists %s, want state A %s", g, a)
			}
			testutil.Eventually(t, 20*time.Second, func() error {
				if w.snapshots() == snaps {
					return fmt.Errorf("the watcher did not list afresh after the restore")
				}
				return nil
			})
			if d := w.diff(t, cl.admin, network); d != "" {
				t.Fatalf("after the restore: %s", d)
			}
			again := cl.allocate(t, network, "c", 20, nil)
			if fmt.Sprint(again) != fmt.Sprint(givenB) {
				t.Logf("after the restore the controller handed out %v (B had %v)", again, givenB)
			}
			if d := w.diff(t, cl.admin, network); d != "" {
				t.Fatalf("after allocating again: %s", d)
			}
		})
	}
}
