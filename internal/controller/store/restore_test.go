package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/errdefs"
)

// TestRestoreRefusesBadInput: a damaged snapshot (its SHA-256 does not match), a file that is no
// snapshot, a data directory that exists and a restore without a revision bump are refused, each with
// what to do, and leave nothing behind.
func TestRestoreRefusesBadInput(t *testing.T) {
	s := open(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	if _, err := s.Snapshot(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	damaged := filepath.Join(dir, "damaged.db")
	notdb := filepath.Join(dir, "notes.txt")
	for p, data := range map[string][]byte{damaged: b, notdb: []byte("hello")} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	exists := t.TempDir()
	for _, c := range []struct {
		name string
		cfg  store.RestoreConfig
		want string
	}{
		{"damaged", store.RestoreConfig{Snapshot: damaged, Dir: filepath.Join(dir, "d1"), BumpRevision: 1}, "SHA-256 does not match"},
		{"not a snapshot", store.RestoreConfig{Snapshot: notdb, Dir: filepath.Join(dir, "d2"), BumpRevision: 1}, "not an etcd snapshot"},
		{"directory exists", store.RestoreConfig{Snapshot: good, Dir: exists, BumpRevision: 1}, "move the old etcd data directory away"},
		{"no bump", store.RestoreConfig{Snapshot: good, Dir: filepath.Join(dir, "d3")}, "revision bump above 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := store.RestoreSnapshot(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("RestoreSnapshot = %v, want an error saying %q", err, c.want)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrAlreadyExists) {
				t.Fatalf("error class of %v: want invalid argument or already exists", err)
			}
			if c.cfg.Dir != exists {
				if _, err := os.Stat(c.cfg.Dir); !os.IsNotExist(err) {
					t.Fatalf("a refused restore left %s behind", c.cfg.Dir)
				}
			}
		})
	}
}
