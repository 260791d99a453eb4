package main

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/controller/store/storetest"
)

// TestSnapshotSaveRestore runs the operator's path: `ovcontroller snapshot save` from a running
// embedded etcd, a change after it, `ovcontroller snapshot restore` into a new data directory; the
// restored etcd holds the saved network but not the later one, at a revision above every earlier one.
func TestSnapshotSaveRestore(t *testing.T) {
	e := storetest.Embedded(t, true)
	st, err := store.Open(store.Config{Endpoints: []string{e.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	pools := store.Pools{Subnet: netip.MustParsePrefix("10.128.0.0/9"), SubnetBits: 24, VNIMin: 4096, VNIMax: 5000}
	create := func(st *store.Store, name, subnet string) int64 {
		n, err := st.CreateNetwork(ctx, api.Network{Name: name, Driver: api.DriverOverlay, Subnet: subnet}, pools)
		if err != nil {
			t.Fatal(err)
		}
		return n.Revision
	}
	create(st, "kept", "10.71.0.0/24")
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")
	run := func(args ...string) string {
		var out bytes.Buffer
		cmd := newRootCmd()
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Fatalf("ovcontroller %s: %v", strings.Join(args, " "), err)
		}
		return out.String()
	}
	t.Log(run("snapshot", "save", "--etcd-client-url", e.ClientURL(), file))
	later := create(st, "lost", "10.72.0.0/24")
	t.Log(run("snapshot", "restore", "--data-dir", dir, file))

	r, err := store.StartEmbedded(store.EmbedConfig{Dir: filepath.Join(dir, "etcd"), UnsafeNoFsync: true, StartTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rs, err := store.Open(store.Config{Endpoints: []string{r.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	nets, err := rs.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 1 || nets[0].Name != "kept" {
		t.Fatalf("restored networks %+v, want only \"kept\"", nets)
	}
	n := create(rs, "after", "10.73.0.0/24")
	if n <= later || n < store.DefaultBumpRevision {
		t.Fatalf("the first write after the restore is at revision %d: not bumped past the revisions before the restore (up to %d)", n, later)
	}
}
