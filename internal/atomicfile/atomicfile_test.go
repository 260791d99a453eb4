package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWriteReplacesAndLeavesNoTemp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(string, []byte, os.FileMode) error
	}{{"Write", Write}, {"WriteSync", WriteSync}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sub", "state.json")
			for _, content := range []string{"first", "second"} {
				if err := tc.write(path, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(path)
				if err != nil || string(b) != content {
					t.Fatalf("read %q, %v; want %q", b, err, content)
				}
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 1 {
				t.Fatalf("directory holds %d entries, want only the file (no temporary left)", len(entries))
			}
		})
	}
}

func TestWriteFailureLeavesTargetAlone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := Write(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory where the target should be: the rename fails, the temporary goes.
	bad := filepath.Join(dir, "isdir")
	if err := os.MkdirAll(filepath.Join(bad, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(bad, []byte("new"), 0o600); err == nil {
		t.Fatal("Write over a non-empty directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("%d entries after a failed write, want 2 (the file and the directory)", len(entries))
	}
}

// The directory is flushed after the rename (so the new name is what becomes durable), only when
// asked for, and its failure is reported.
func TestWriteSyncFlushesDirectoryAfterRename(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sync     bool
		dirErr   error
		newDirs  int // directories the write must make
		wantDirs int
	}{
		{name: "sync", sync: true, wantDirs: 1},
		{name: "no sync", sync: false, wantDirs: 0},
		{name: "directory sync fails", sync: true, dirErr: os.ErrPermission, wantDirs: 1},
		// The new directories' names live in their parents: those are flushed too, deepest first.
		{name: "new directories", sync: true, newDirs: 2, wantDirs: 3},
		{name: "new directories, no sync", sync: false, newDirs: 2, wantDirs: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			dir := top
			var want []string
			for range tc.newDirs {
				want = append([]string{dir}, want...)
				dir = filepath.Join(dir, "sub")
			}
			want = append([]string{dir}, want...)
			path := filepath.Join(dir, "state.json")
			var synced []string
			o := options{sync: tc.sync, syncDir: func(d string) error {
				b, err := os.ReadFile(path)
				if err != nil || string(b) != "new" {
					t.Errorf("directory flushed before the rename: target holds %q, %v", b, err)
				}
				synced = append(synced, d)
				return tc.dirErr
			}}
			err := write(path, []byte("new"), 0o600, o)
			if !errors.Is(err, tc.dirErr) || (tc.dirErr == nil) != (err == nil) {
				t.Fatalf("write: %v, want %v", err, tc.dirErr)
			}
			if tc.dirErr != nil {
				want = want[:1] // the first failure ends the write
			}
			if !tc.sync {
				want = nil
			}
			if len(synced) != tc.wantDirs || !slices.Equal(synced, want) {
				t.Fatalf("flushed directories %q, want %q", synced, want)
			}
		})
	}
}

func TestSyncDir(t *testing.T) {
	if err := syncDir(t.TempDir()); err != nil {
		t.Fatalf("sync an existing directory: %v", err)
	}
	if err := syncDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("sync a missing directory: %v, want ErrNotExist", err)
	}
}
