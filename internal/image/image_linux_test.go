package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/testutil"
)

func TestLoadArchives(t *testing.T) {
	base, top := testImages(t)
	baseID, topID := digestOf(t, base), digestOf(t, top)
	tests := []struct {
		name    string
		archive func(t testing.TB, images map[string]v1Image) string
	}{
		{"docker save", dockerArchive},
		{"docker save gzipped", func(t testing.TB, images map[string]v1Image) string {
			p := dockerArchive(t, images)
			if err := os.WriteFile(p, gzipped(t, []byte(readFile(t, p))), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"OCI layout", ociArchive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			ctx := context.Background()
			path := tc.archive(t, map[string]v1Image{"busybox:1": base, "docker.io/library/busybox:latest": base, "example.com/team/app:v2": top})
			var calls, last, total int64
			loaded, err := s.LoadFile(ctx, path, func(read, tot int64) { calls++; last, total = read, tot })
			if err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(path)
			if calls == 0 || last != st.Size() || total != st.Size() {
				t.Errorf("progress: %d calls, last %d/%d, want last %d/%d", calls, last, total, st.Size(), st.Size())
			}
			if len(loaded) != 2 {
				t.Fatalf("loaded %d images, want 2: %+v", len(loaded), loaded)
			}
			list, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, img := range list {
				got[img.ID] = img.RepoTags
			}
			want := map[string][]string{
				baseID: {"busybox:1", "busybox:latest"},
				topID:  {"example.com/team/app:v2"},
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("images (-want +got):\n%s", d)
			}
			// Layers are shared by digest: 3 distinct layers for 2 images of 2 and 3 layers.
			if n := len(layerDirs(t, s)); n != 3 {
				t.Errorf("%d layer dirs, want 3", n)
			}
			img, err := s.Get(ctx, "docker.io/library/busybox")
			if err != nil {
				t.Fatal(err)
			}
			wantCfg := RunConfig{
				Env: []string{"PATH=/bin:/sbin", "GREETING=hi"}, Entrypoint: []string{"/bin/sh", "-c"},
				Cmd: []string{"echo hello"}, WorkingDir: "/data", User: "nobody", ExposedPorts: []string{"53/udp", "80/tcp"},
			}
			if d := cmp.Diff(wantCfg, img.Config); d != "" {
				t.Errorf("run config (-want +got):\n%s", d)
			}
			if img.ID != baseID || len(img.Layers) != 2 || img.Size < 100_000 {
				t.Errorf("image = %+v; want ID %s, 2 layers, size of busybox", img, baseID)
			}
			byID, err := s.Get(ctx, strings.TrimPrefix(topID, "sha256:")[:10])
			if err != nil || byID.ID != topID {
				t.Errorf("Get by ID prefix = %v, %v; want %s", byID.ID, err, topID)
			}
			// Loading again changes nothing and unpacks nothing.
			if _, err := s.LoadFile(ctx, path, nil); err != nil {
				t.Fatal(err)
			}
			list2, _ := s.List(ctx)
			if d := cmp.Diff(list, list2); d != "" {
				t.Errorf("second load changed the store (-first +second):\n%s", d)
			}
			// The index survives reopening the store.
			s2, err := New(s.cfg)
			if err != nil {
				t.Fatal(err)
			}
			list3, _ := s2.List(ctx)
			if d := cmp.Diff(list, list3, cmpTimes); d != "" {
				t.Errorf("reopened store differs (-before +after):\n%s", d)
			}
		})
	}
}

var cmpTimes = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

func TestLoadRejectsBadArchives(t *testing.T) {
	base, _ := testImages(t)
	good := readFile(t, dockerArchive(t, map[string]v1Image{"busybox:1": base}))
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"not a tar", []byte("this is not an image archive, just text that goes on for a while......................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."), "not a valid tar stream"},
		{"tar without manifest", tarOf(t, entry{name: "hello.txt", body: "hi"}), "neither a docker save archive"},
		{"truncated", []byte(good[:len(good)/2]), "bad.tar"},
		{"hostile archive", tarOf(t, entry{name: "manifest.json", body: "[]"}, entry{name: "../up", body: "x"}), `"../up"`},
		{"manifest names a file outside", tarOf(t, entry{name: "manifest.json", body: `[{"Config":"../../../../etc/passwd","RepoTags":["x:1"],"Layers":[]}]`}), `"../../../../etc/passwd"`},
		{"symlink member out of the archive", tarOf(t,
			entry{name: "manifest.json", body: `[{"Config":"c.json","RepoTags":["x:1"],"Layers":[]}]`},
			entry{name: "c.json", typ: tar.TypeSymlink, link: "/etc/passwd"}), "c.json"},
		{"windows image", tarOf(t,
			entry{name: "manifest.json", body: `[{"Config":"c.json","RepoTags":["x:1"],"Layers":[]}]`},
			entry{name: "c.json", body: `{"os":"windows","rootfs":{"type":"layers","diff_ids":[]}}`}), "is for windows"},
		{"layer digest mismatch", tarOf(t,
			entry{name: "manifest.json", body: `[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l.tar"]}]`},
			entry{name: "c.json", body: `{"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("0", 64) + `"]}}`},
			entry{name: "l.tar", body: string(tarOf(t, entry{name: "f", body: "1"}))}), "content has digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			p := filepath.Join(t.TempDir(), "bad.tar")
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := s.LoadFile(context.Background(), p, nil)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("Load = %v; want ErrInvalidArgument naming %s and saying %q", err, p, tc.want)
			}
			assertEmptyStore(t, s)
		})
	}
}

// assertEmptyStore checks that nothing was left: no image, layer or temporary file.
func assertEmptyStore(t *testing.T, s *Store) {
	t.Helper()
	if l := layerDirs(t, s); len(l) != 0 {
		t.Errorf("layers left behind: %v", l)
	}
	if e, _ := os.ReadDir(s.tmpDir()); len(e) != 0 {
		t.Errorf("temporary files left behind: %v", e)
	}
	if l, _ := s.List(context.Background()); len(l) != 0 {
		t.Errorf("images left: %+v", l)
	}
}

func TestPrepareSharesLayersAndIsolatesContainers(t *testing.T) {
	for _, fsopen := range []bool{false, true} {
		name := "mount"
		if fsopen {
			name = "fsopen"
		}
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			s.forceFsopen = fsopen
			ctx := context.Background()
			base, _ := testImages(t)
			if _, err := s.LoadFile(ctx, dockerArchive(t, map[string]v1Image{"busybox:latest": base}), nil); err != nil {
				t.Fatal(err)
			}
			img, _ := s.Get(ctx, "busybox")
			r1, err := s.Prepare(ctx, "c1", "busybox")
			if err != nil {
				t.Fatal(err)
			}
			r2, err := s.Prepare(ctx, "c2", "busybox:latest")
			if err != nil {
				t.Fatal(err)
			}
			again, err := s.Prepare(ctx, "c1", "busybox")
			if err != nil || again != r1 {
				t.Fatalf("second Prepare = %q, %v; want %q", again, err, r1)
			}
			mounts := mountsUnder(t, s.Root())
			if len(mounts) != 2 {
				t.Fatalf("mounts under the store: want 2 (one per container, Prepare is idempotent):\n%s", strings.Join(mounts, "\n"))
			}
			// Both mounts use the image's layer directories (top first) as lower dirs.
			var want []string
			for _, l := range slices.Backward(img.Layers) {
				want = append(want, s.layerDir(l))
			}
			for _, r := range []string{r1, r2} {
				if d := cmp.Diff(want, lowerDirs(t, r)); d != "" {
					t.Errorf("lower dirs of %s (-want +got):\n%s", r, d)
				}
			}

			// The image's content, with whiteouts and opaque dirs applied.
			if got := readFile(t, filepath.Join(r1, "etc/added")); got != "added\n" {
				t.Errorf("etc/added = %q", got)
			}
			if _, err := os.Lstat(filepath.Join(r1, "etc/removed")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("whited-out etc/removed: Lstat = %v, want not exist", err)
			}
			data, _ := os.ReadDir(filepath.Join(r1, "data"))
			var names []string
			for _, e := range data {
				names = append(names, e.Name())
			}
			if d := cmp.Diff([]string{"new"}, names); d != "" {
				t.Errorf("opaque dir /data (-want +got):\n%s", d)
			}
			// A program from the image runs in it.
			out, err := chrootRun(r1, "/bin/sh", "-c", "cat /keep /etc/added; ls /data; test -e /etc/removed || echo removed-ok")
			if err != nil || out != "kept\nadded\nnew\nremoved-ok\n" {
				t.Errorf("busybox in rootfs: %q, %v", out, err)
			}

			// Writes and deletes in one container show neither in the other nor in the layers.
			if err := os.WriteFile(filepath.Join(r1, "keep"), []byte("changed\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(r1, "etc/c1only"), []byte("1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(r1, "etc/added")); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(r2, "keep")); got != "kept\n" {
				t.Errorf("c2 sees c1's write: keep = %q", got)
			}
			if got := readFile(t, filepath.Join(r2, "etc/added")); got != "added\n" {
				t.Errorf("c2 sees c1's delete: etc/added = %q", got)
			}
			if _, err := os.Lstat(filepath.Join(r2, "etc/c1only")); err == nil {
				t.Errorf("c2 sees c1's new file")
			}
			if got := readFile(t, filepath.Join(s.layerDir(img.Layers[0]), "keep")); got != "kept\n" {
				t.Errorf("layer changed by a container write: keep = %q", got)
			}
			for _, l := range img.Layers {
				if _, err := os.Lstat(filepath.Join(s.layerDir(l), "etc/c1only")); err == nil {
					t.Errorf("container write landed in layer %s", l)
				}
			}

			// Unmount keeps the container's changes for the next Prepare.
			if err := s.Unmount(ctx, "c1"); err != nil {
				t.Fatal(err)
			}
			if m, _ := s.Mounted("c1"); m {
				t.Fatal("c1 still mounted after Unmount")
			}
			if r, err := s.Prepare(ctx, "c1", "busybox"); err != nil || readFile(t, filepath.Join(r, "keep")) != "changed\n" {
				t.Fatalf("Prepare after Unmount: %v; want c1's change kept", err)
			}
			if _, err := os.Lstat(filepath.Join(r1, "etc/added")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("file c1 deleted is back after remount: %v", err)
			}
			if _, err := s.Prepare(ctx, "c1", strings.TrimPrefix(img.ID, "sha256:")); err != nil {
				t.Errorf("Prepare by ID of the same image: %v", err)
			}

			// Release leaves no mount and no directory, and is idempotent.
			for _, c := range []string{"c1", "c2", "c1"} {
				if err := s.Release(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			if m := mountsUnder(t, s.Root()); len(m) != 0 {
				t.Errorf("mounts left after Release:\n%s", strings.Join(m, "\n"))
			}
			if e, _ := os.ReadDir(filepath.Join(s.Root(), "containers")); len(e) != 0 {
				t.Errorf("container dirs left after Release: %v", e)
			}
		})
	}
}

// chrootRun runs a command chrooted into root and returns its output.
func chrootRun(root string, args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bin:/sbin:/usr/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestHostileLayers(t *testing.T) {
	outside := t.TempDir()
	up := strings.Repeat("../", 20) + strings.TrimPrefix(outside, "/")
	tests := []struct {
		name    string
		entries []entry
		refused string // the entry the error must name
	}{
		{"dot-dot escape", []entry{{name: "ok", body: "x"}, {name: up + "/escape", body: "pwned"}}, up + "/escape"},
		{"absolute path", []entry{{name: outside + "/abs", body: "pwned"}}, outside + "/abs"},
		{"symlink out then write", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/pwned", body: "pwned"},
		}, "evil/pwned"},
		{"relative symlink out then write", []entry{
			{name: "a/", typ: tar.TypeDir},
			{name: "a/evil", typ: tar.TypeSymlink, link: "../" + up},
			{name: "a/evil/pwned", body: "pwned"},
		}, "a/evil/pwned"},
		{"symlink out then mkdir", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/dir/", typ: tar.TypeDir},
		}, "evil/dir/"},
		{"hard link to /etc/passwd", []entry{{name: "passwd", typ: tar.TypeLink, link: "/etc/passwd"}}, "passwd"},
		{"hard link up to /etc/passwd", []entry{{name: "passwd", typ: tar.TypeLink, link: strings.Repeat("../", 20) + "etc/passwd"}}, "passwd"},
		{"hard link through symlink out", []entry{
			{name: "etc", typ: tar.TypeSymlink, link: "/etc"},
			{name: "passwd", typ: tar.TypeLink, link: "etc/passwd"},
		}, "passwd"},
		// In a bottom layer (import) whiteouts are skipped, so this one is refused only above it.
		{"whiteout through symlink out", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/.wh.victim"},
		}, "evil/.wh.victim"},
		{"opaque marker through symlink out", []entry{
			{name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/.wh..wh..opq"},
		}, "evil/.wh..wh..opq"},
	}
	if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("safe"), 0o644); err != nil {
		t.Fatal(err)
	}
	var passwd unix.Stat_t
	if err := unix.Stat("/etc/passwd", &passwd); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		for _, via := range []string{"import", "docker save"} {
			t.Run(tc.name+" via "+via, func(t *testing.T) {
				if via == "import" && strings.Contains(tc.refused, whiteoutPrefix) {
					testutil.NotApplicable(t, "whiteouts are skipped in a bottom layer (import): the \"via docker save\" case covers this one")
				}
				s := newStore(t)
				ctx := context.Background()
				layer := tarOf(t, tc.entries...)
				var err error
				if via == "import" {
					_, err = s.Import(ctx, bytes.NewReader(layer), ImportOptions{Ref: "hostile"})
				} else {
					// Above a harmless bottom layer, so that whiteouts are converted too.
					img, merr := mutate.AppendLayers(imageOf(t, tarOf(t, entry{name: "ok", body: "1"})), layerOf(t, layer))
					if merr != nil {
						t.Fatal(merr)
					}
					_, err = s.LoadFile(ctx, dockerArchive(t, map[string]v1Image{"hostile:latest": img}), nil)
				}
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `"`+tc.refused+`"`) {
					t.Fatalf("err = %v; want ErrInvalidArgument naming entry %q", err, tc.refused)
				}
				t.Logf("refused: %v", err)
				entries, _ := os.ReadDir(outside)
				if len(entries) != 1 || readFile(t, filepath.Join(outside, "victim")) != "safe" {
					t.Errorf("something was written outside the layer: %v", entries)
				}
				var st unix.Stat_t
				if err := unix.Stat("/etc/passwd", &st); err != nil || st.Nlink != passwd.Nlink {
					t.Errorf("/etc/passwd gained a link: nlink %d, was %d", st.Nlink, passwd.Nlink)
				}
				assertEmptyStore(t, s)
			})
		}
	}
}

func TestUnpackKeepsMetadata(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	layer := tarOf(t,
		entry{name: "./", typ: tar.TypeDir, mode: 0o755},
		entry{name: "bin/", typ: tar.TypeDir, mode: 0o711, uid: 7, gid: 8},
		entry{name: "bin/suid", body: "#!", mode: 0o4755, uid: 0, gid: 0},
		entry{name: "home/user/file", body: "data", mode: 0o600, uid: 1000, gid: 1001, xattrs: map[string]string{"user.note": "hello", "trusted.overlay.redirect": "/x"}},
		entry{name: "home/user/hard", typ: tar.TypeLink, link: "home/user/file"},
		entry{name: "lnk", typ: tar.TypeSymlink, link: "/bin/suid"},
		entry{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		entry{name: "fifo", typ: tar.TypeFifo, mode: 0o644},
	)
	img, err := s.Import(ctx, bytes.NewReader(gzipped(t, layer)), ImportOptions{Ref: "meta:1", Config: RunConfig{Cmd: []string{"/bin/sh"}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.layerDir(img.Layers[0])
	stat := func(name string) unix.Stat_t {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, name), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	want := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).Unix()
	tests := []struct {
		name     string
		mode     uint32
		uid, gid uint32
	}{
		{"bin", unix.S_IFDIR | 0o711, 7, 8},
		{"bin/suid", unix.S_IFREG | 0o4755, 0, 0},
		{"home/user/file", unix.S_IFREG | 0o600, 1000, 1001},
		{"lnk", unix.S_IFLNK | 0o777, 0, 0},
		{"dev/null", unix.S_IFCHR | 0o666, 0, 0},
		{"fifo", unix.S_IFIFO | 0o644, 0, 0},
	}
	for _, tc := range tests {
		st := stat(tc.name)
		if st.Mode != tc.mode || st.Uid != tc.uid || st.Gid != tc.gid || st.Mtim.Sec != want {
			t.Errorf("%s: mode %o uid %d gid %d mtime %d; want %o %d %d %d", tc.name, st.Mode, st.Uid, st.Gid, st.Mtim.Sec, tc.mode, tc.uid, tc.gid, want)
		}
	}
	if st := stat("dev/null"); unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null is %d:%d, want 1:3", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if a, b := stat("home/user/file"), stat("home/user/hard"); a.Ino != b.Ino {
		t.Errorf("hard link not kept: inodes %d and %d", a.Ino, b.Ino)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "lnk")); l != "/bin/suid" {
		t.Errorf("symlink target %q", l)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(filepath.Join(dir, "home/user/file"), "user.note", buf); err != nil || string(buf[:n]) != "hello" {
		t.Errorf("user.note xattr = %q, %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(dir, "home/user/file"), "trusted.overlay.redirect", buf); err == nil {
		t.Errorf("trusted.overlay.* xattr from the tar was kept")
	}
	if img.Config.Cmd[0] != "/bin/sh" || img.RepoTags[0] != "meta:1" {
		t.Errorf("imported image = %+v", img)
	}
}

func TestImportListRemove(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	plain := tarOf(t, entry{name: "bin/", typ: tar.TypeDir}, entry{name: "bin/hello", body: "hi", mode: 0o755})
	a, err := s.Import(ctx, bytes.NewReader(plain), ImportOptions{Ref: "fs:a"})
	if err != nil {
		t.Fatal(err)
	}
	// Same rootfs, other tag and config: a second image sharing the layer.
	b, err := s.Import(ctx, bytes.NewReader(gzipped(t, plain)), ImportOptions{Ref: "fs:b", Config: RunConfig{Cmd: []string{"/bin/hello"}}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Import(ctx, bytes.NewReader(tarOf(t, entry{name: "x", body: "y"})), ImportOptions{Ref: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID || a.Layers[0] != b.Layers[0] || len(layerDirs(t, s)) != 2 {
		t.Fatalf("a %+v\nb %+v\nlayers %v: want two images sharing one layer", a, b, layerDirs(t, s))
	}
	list, _ := s.List(ctx)
	var tags []string
	for _, img := range list {
		tags = append(tags, img.RepoTags...)
	}
	if d := cmp.Diff([]string{"fs:a", "fs:b", "other:latest"}, tags); d != "" {
		t.Errorf("List tags (-want +got):\n%s", d)
	}

	_, err = s.Get(ctx, "nosuch")
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `image "nosuch:latest" not found; load it with ovctl image load`) {
		t.Errorf("Get unknown = %v", err)
	}

	// In use by a prepared container: refused until released.
	if _, err := s.Prepare(ctx, "user", "fs:a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, "fs:a"); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "container user") {
		t.Fatalf("Remove in-use image = %v; want ErrConflict naming the container", err)
	}
	if _, err := s.Prepare(ctx, "user", "fs:b"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Prepare with another image = %v; want ErrConflict", err)
	}
	if err := s.Release(ctx, "user"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Remove(ctx, "fs:a")
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != a.ID || len(res.Layers) != 0 {
		t.Errorf("Remove fs:a = %+v; want image deleted, shared layer kept", res)
	}
	if _, err := os.Stat(s.layerDir(b.Layers[0])); err != nil {
		t.Errorf("shared layer removed: %v", err)
	}

	// The InUse hook also protects images.
	s.cfg.InUse = func(id string) bool { return id == b.ID }
	if _, err := s.Remove(ctx, "fs:b"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Remove with InUse hook = %v; want ErrConflict", err)
	}
	s.cfg.InUse = nil

	res, err = s.Remove(ctx, strings.TrimPrefix(b.ID, "sha256:")[:12])
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Removed{Untagged: []string{"fs:b"}, Deleted: b.ID, Layers: b.Layers}, res); d != "" {
		t.Errorf("Remove by ID (-want +got):\n%s", d)
	}
	if d := cmp.Diff(other.Layers, layerDirs(t, s)); d != "" {
		t.Errorf("layers left (-want +got):\n%s", d)
	}
	if _, err := s.Remove(ctx, "fs:b"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Remove twice = %v; want ErrNotFound", err)
	}
}

func TestRemoveTagKeepsImage(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	base, _ := testImages(t)
	if _, err := s.LoadFile(ctx, dockerArchive(t, map[string]v1Image{"one:1": base, "two:2": base}), nil); err != nil {
		t.Fatal(err)
	}
	res, err := s.Remove(ctx, "one:1")
	if err != nil || res.Deleted != "" || !slices.Equal(res.Untagged, []string{"one:1"}) {
		t.Fatalf("Remove one of two tags = %+v, %v; want only untagged", res, err)
	}
	img, err := s.Get(ctx, "two:2")
	if err != nil || !slices.Equal(img.RepoTags, []string{"two:2"}) {
		t.Fatalf("Get two:2 = %+v, %v", img, err)
	}
	// Loading another image under an existing tag moves the tag.
	if _, err := s.Import(ctx, bytes.NewReader(tarOf(t, entry{name: "f", body: "1"})), ImportOptions{Ref: "two:2"}); err != nil {
		t.Fatal(err)
	}
	old, err := s.Get(ctx, img.ID)
	if err != nil || len(old.RepoTags) != 0 {
		t.Errorf("old image after its tag moved = %+v, %v; want untagged", old, err)
	}
}

func TestNewCleansInterruptedLoads(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	img, err := s.Import(ctx, bytes.NewReader(tarOf(t, entry{name: "f", body: "1"})), ImportOptions{Ref: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	// A crash mid-load leaves a half-unpacked layer in tmp/ and a complete but unrecorded layer.
	half := filepath.Join(s.tmpDir(), "layer-123", "layer", "usr")
	orphan := s.layerDir("sha256:" + strings.Repeat("ab", 32))
	for _, d := range []string{half, orphan} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := New(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(img.Layers, layerDirs(t, s2)); d != "" {
		t.Errorf("layers after reopening (-want +got):\n%s", d)
	}
	if e, _ := os.ReadDir(s2.tmpDir()); len(e) != 0 {
		t.Errorf("tmp not emptied: %v", e)
	}
	if _, err := s2.Get(ctx, "kept"); err != nil {
		t.Error(err)
	}
}

func TestConcurrentLoadsAndRemoves(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	base, top := testImages(t)
	path := dockerArchive(t, map[string]v1Image{"busybox:latest": base, "app:1": top})
	errs := make(chan error, 8)
	for range 4 {
		go func() {
			_, err := s.LoadFile(ctx, path, nil)
			errs <- err
		}()
		go func() {
			// Removing while loading either finds nothing yet, or removes a loaded image; never
			// breaks a load.
			_, err := s.Remove(ctx, "app:1")
			if errors.Is(err, errdefs.ErrNotFound) {
				err = nil
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if _, err := s.LoadFile(ctx, path, nil); err != nil {
		t.Fatal(err)
	}
	// Every image's layers are complete: each can be prepared and runs busybox.
	for _, ref := range []string{"busybox", "app:1"} {
		r, err := s.Prepare(ctx, "c-"+strings.ReplaceAll(ref, ":", "-"), ref)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := chrootRun(r, "/bin/cat", "/keep"); err != nil || out != "kept\n" {
			t.Errorf("%s: cat /keep = %q, %v", ref, out, err)
		}
	}
	if n := len(layerDirs(t, s)); n != 3 {
		t.Errorf("%d layer dirs, want 3", n)
	}
}

func TestWhiteoutsInBottomLayerAreInvisible(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	layer := tarOf(t,
		entry{name: "etc/passwd", body: "root:x:0:0::/:/bin/sh\n"},
		entry{name: "etc/.wh.ghost"},
		entry{name: "etc/.wh..wh..opq"},
		entry{name: ".wh..wh.plnk/", typ: tar.TypeDir},
		entry{name: ".wh..wh.plnk/1234.5", body: "aufs hard link"},
	)
	if _, err := s.Import(ctx, bytes.NewReader(layer), ImportOptions{Ref: "ghost"}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Prepare(ctx, "g", "ghost")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"etc", "etc/passwd"}, tree(t, r)); d != "" {
		t.Errorf("rootfs (-want +got):\n%s", d)
	}
}

// TestLayerAtBottomAndAbove loads one layer with whiteouts as the bottom of one image and above
// another layer in a second image: each image sees it right.
func TestLayerAtBottomAndAbove(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	wh := layerOf(t, tarOf(t, entry{name: "etc/", typ: tar.TypeDir}, entry{name: "etc/.wh.removed"}, entry{name: "etc/added", body: "a"}))
	below := layerOf(t, tarOf(t, entry{name: "etc/removed", body: "r"}, entry{name: "etc/passwd", body: "p"}))
	alone, err := mutate.AppendLayers(empty.Image, wh)
	if err != nil {
		t.Fatal(err)
	}
	stacked, err := mutate.AppendLayers(empty.Image, below, wh)
	if err != nil {
		t.Fatal(err)
	}
	for _, order := range [][]string{{"alone", "stacked"}, {"stacked", "alone"}} {
		t.Run(strings.Join(order, " then "), func(t *testing.T) {
			s := newStore(t)
			imgs := map[string]v1Image{"alone": alone, "stacked": stacked}
			for _, name := range order {
				if _, err := s.LoadFile(ctx, dockerArchive(t, map[string]v1Image{name + ":1": imgs[name]}), nil); err != nil {
					t.Fatal(err)
				}
			}
			want := map[string][]string{
				"alone":   {"etc", "etc/added"},
				"stacked": {"etc", "etc/added", "etc/passwd"},
			}
			for name, w := range want {
				r, err := s.Prepare(ctx, name, name+":1")
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(w, tree(t, r)); d != "" {
					t.Errorf("%s rootfs (-want +got):\n%s", name, d)
				}
			}
			if n := len(layerDirs(t, s)); n != 3 {
				t.Errorf("layer dirs %v; want 3 (below, and the whiteout layer in both forms)", layerDirs(t, s))
			}
		})
	}
	_ = s
}

// tree lists the paths under dir, sorted.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(dir, p); rel != "." {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestManyLayersMountWithFsconfig(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	img := imageOf(t, tarOf(t, entry{name: "bottom", body: "b"}))
	const n = 60 // options of 60 lower dirs exceed a page: Prepare must switch to fsconfig
	for i := 1; i < n; i++ {
		var err error
		img, err = mutate.AppendLayers(img, layerOf(t, tarOf(t, entry{name: "layer" + strings.Repeat("x", i), body: "l"})))
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.LoadFile(ctx, dockerArchive(t, map[string]v1Image{"tall:1": img}), nil); err != nil {
		t.Fatal(err)
	}
	r, err := s.Prepare(ctx, "tall", "tall:1")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(tree(t, r)); got != n {
		t.Errorf("rootfs has %d entries, want one per layer (%d)", got, n)
	}
	if l := lowerDirs(t, r); len(l) != n {
		t.Errorf("mount has %d lower dirs, want %d", len(l), n)
	}
}

func TestLoadPicksPlatformFromIndex(t *testing.T) {
	ctx := context.Background()
	var manifests []mutate.IndexAddendum
	for _, arch := range []string{"arm64", "amd64"} {
		img := imageOf(t, tarOf(t, entry{name: "arch", body: arch}))
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.AppendManifests(empty.Index, manifests...)
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{"io.containerd.image.name": "docker.io/library/multi:1"})); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "multi.tar")
	if err := os.WriteFile(archive, tarDir(t, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			s := newStore(t)
			s.cfg.Platform = "linux/" + arch
			imgs, err := s.LoadFile(ctx, archive, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 || imgs[0].Architecture != arch || !slices.Equal(imgs[0].RepoTags, []string{"multi:1"}) {
				t.Fatalf("loaded %+v; want one linux/%s image tagged multi:1", imgs, arch)
			}
			if got := readFile(t, filepath.Join(s.layerDir(imgs[0].Layers[0]), "arch")); got != arch {
				t.Errorf("layer content %q, want %q", got, arch)
			}
		})
	}
}

// TestLoadOldDockerSaveWithSymlinkedLayers reads the pre-1.10 docker save layout, where an image
// reuses another's layer through a symlink.
func TestLoadOldDockerSaveWithSymlinkedLayers(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	layer := tarOf(t, entry{name: "f", body: "shared"})
	diffID := sha256hex(layer)
	cfg := func(cmd string) string {
		return `{"os":"linux","architecture":"amd64","config":{"Cmd":["` + cmd + `"]},"rootfs":{"type":"layers","diff_ids":["sha256:` + diffID + `"]}}`
	}
	archive := tarOf(t,
		entry{name: "manifest.json", body: `[{"Config":"a.json","RepoTags":["a:1"],"Layers":["l1/layer.tar"]},{"Config":"b.json","RepoTags":["b:1"],"Layers":["l2/layer.tar"]}]`},
		entry{name: "a.json", body: cfg("a")},
		entry{name: "b.json", body: cfg("b")},
		entry{name: "l1/", typ: tar.TypeDir},
		entry{name: "l1/layer.tar", body: string(layer)},
		entry{name: "l2/", typ: tar.TypeDir},
		entry{name: "l2/layer.tar", typ: tar.TypeSymlink, link: "../l1/layer.tar"},
	)
	imgs, err := s.Load(ctx, bytes.NewReader(archive), LoadOptions{Source: "old.tar"})
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].Layers[0] != imgs[1].Layers[0] || imgs[1].Config.Cmd[0] != "b" {
		t.Fatalf("loaded %+v; want a:1 and b:1 sharing one layer", imgs)
	}
	if d := cmp.Diff([]string{"sha256:" + diffID}, layerDirs(t, s)); d != "" {
		t.Errorf("layers (-want +got):\n%s", d)
	}
}

// TestImportGNUTarRootfs imports a busybox rootfs packed by GNU tar (`tar -C rootfs -czf x.tgz .`,
// names like "./bin/sh") and runs a shell from it.
func TestImportGNUTarRootfs(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	testutil.BusyboxRootfs(t, rootfs)
	archive := filepath.Join(t.TempDir(), "rootfs.tgz")
	testutil.Run(t, "tar", "-C", rootfs, "--numeric-owner", "-czf", archive, ".")
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := s.Import(ctx, f, ImportOptions{Ref: "bb", LoadOptions: LoadOptions{Source: archive}, Config: RunConfig{Cmd: []string{"/bin/sh"}}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Prepare(ctx, "gnu", img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := chrootRun(r, "/bin/sh", "-c", "echo ok > /tmp/x && cat /tmp/x && ls -ld /tmp | cut -c1-10"); err != nil || out != "ok\ndrwxrwxrwt\n" {
		t.Errorf("shell in imported rootfs: %q, %v", out, err)
	}
}
