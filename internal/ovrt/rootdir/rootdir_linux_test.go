package rootdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// snapshot lists everything under dir (names, types and the content of regular files and links).
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %s %d:%d", strings.TrimPrefix(p, dir), fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			line += " -> " + l
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// hostile makes a root whose "link" is a symlink, by each way out of the tree, to outside, a host
// directory holding a file "victim".
func hostile(t *testing.T, how string) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "a")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]map[string]string{
		"absolute": {"link": outside},
		"relative": {"link": "../../../../../../../../../../" + outside},
		"chain":    {"link": "a/hop1", "a/hop1": "../a/hop2", "a/hop2": "../../../../../../../../../../../.." + outside},
	}[how]
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func TestNothingLeavesTheRoot(t *testing.T) {
	ops := map[string]func(t *testing.T, d *Dir) error{
		"MkdirAll": func(t *testing.T, d *Dir) error { f, err := d.MkdirAll("/link/new/dir", 0o755); closeIf(f); return err },
		"MkFile":   func(t *testing.T, d *Dir) error { f, err := d.MkFile("/link/new/file", 0o644); closeIf(f); return err },
		"MkFile victim": func(t *testing.T, d *Dir) error {
			f, err := d.MkFile("/link/victim", 0o644)
			closeIf(f)
			return err
		},
		"Symlink": func(t *testing.T, d *Dir) error { _ = d.Symlink("x", "/link/new"); return nil },
		"Remove":  func(t *testing.T, d *Dir) error { _ = d.Remove("/link/victim"); return nil },
		"Mknod":   func(t *testing.T, d *Dir) error { _ = d.Mknod("/link/fifo", unix.S_IFIFO|0o644, 0); return nil },
		"Lchown":  func(t *testing.T, d *Dir) error { _ = d.Lchown("/link/victim", 12345, 12345); return nil },
		"ReadFile": func(t *testing.T, d *Dir) error {
			if b, err := d.ReadFile("/link/victim", 100); err == nil {
				t.Errorf("ReadFile of a symlink out of the root read %q from the host", b)
			}
			return nil
		},
	}
	for _, how := range []string{"absolute", "relative", "chain"} {
		for name, op := range ops {
			t.Run(how+"/"+name, func(t *testing.T) {
				root, outside := hostile(t, how)
				before := snapshot(t, outside)
				d, err := Open(root)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				if err := op(t, d); err != nil {
					t.Fatalf("%s through a symlink out of the root: %v (it should work inside the root)", name, err)
				}
				if after := snapshot(t, outside); after != before {
					t.Errorf("the host directory changed:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			})
		}
	}
}

func closeIf(f *os.File) {
	if f != nil {
		f.Close()
	}
}

func TestCreateFollowsSymlinksInside(t *testing.T) {
	root := t.TempDir()
	for name, target := range map[string]string{
		"etc/resolv.conf": "../run/resolve/stub-resolv.conf", // dangling, as on systemd images
		"var/run":         "/run",
		"data":            "/srv/data", // dangling directory
	} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tt := range []struct {
		p, want string
		dir     bool
	}{
		{"/etc/resolv.conf", "run/resolve/stub-resolv.conf", false},
		{"/var/run/x/y", "run/x/y", true},
		{"/data/sub", "srv/data/sub", true},
	} {
		var f *os.File
		if tt.dir {
			f, err = d.MkdirAll(tt.p, 0o755)
		} else {
			f, err = d.MkFile(tt.p, 0o644)
		}
		if err != nil {
			t.Fatalf("create %s: %v", tt.p, err)
		}
		got, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
		f.Close()
		if want := filepath.Join(d.Path(), tt.want); got != want {
			t.Errorf("create %s made %s, want %s", tt.p, got, want)
		}
	}
}

func TestReadFileRefusesWhatIsNotASmallRegularFile(t *testing.T) {
	root := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "big"), make([]byte, 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "ok"), []byte("root:x:0:0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tt := range []struct{ p, wantErr string }{
		{"/fifo", "named pipe"},
		{"/big", "more than the 1024"},
		{"/dir", "a directory"},
		{"/missing", "no such file"},
		{"/ok", ""},
	} {
		done := make(chan error, 1)
		go func() { _, err := d.ReadFile(tt.p, 1024); done <- err }()
		select {
		case err := <-done:
			if tt.wantErr == "" && err != nil {
				t.Errorf("ReadFile(%s): %v", tt.p, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("ReadFile(%s) = %v, want an error containing %q", tt.p, err, tt.wantErr)
			}
			if tt.p == "/missing" && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("ReadFile(%s) = %v, want os.ErrNotExist", tt.p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("ReadFile(%s) still blocked after 5s", tt.p)
		}
	}
}
