package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ovnet/ov/internal/testutil"
)

// newStore opens a store in a fresh directory and releases every container left prepared when the
// test ends (even when it fails).
func newStore(t *testing.T) *Store {
	t.Helper()
	testutil.RequireRoot(t)
	cfg := DefaultConfig()
	cfg.Root = filepath.Join(t.TempDir(), "images")
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseAll(t, s) })
	return s
}

func releaseAll(t *testing.T, s *Store) {
	ps, err := s.Prepared(context.Background())
	if err != nil {
		t.Error(err)
	}
	for _, p := range ps {
		if err := s.Release(context.Background(), p.ContainerID); err != nil {
			t.Error(err)
		}
	}
}

// entry is one tar entry for tarOf.
type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	xattrs           map[string]string
	major, minor     int64
}

func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime,
			Linkname: e.link, Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarDir archives the tree at dir (regular files, dirs, symlinks), names relative to dir.
func tarDir(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = rel
		if d.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layerOf(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImages builds a busybox image in two layers, and a second image with one more layer on top:
//
//	layer 1: busybox rootfs + /etc/removed, /data/old1, /data/sub/old2, /keep
//	layer 2: whiteout of /etc/removed, /data made opaque with /data/new, /etc/added
//	layer 3 (second image only): /etc/third
func testImages(t testing.TB) (base, top v1.Image) {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	testutil.BusyboxRootfs(t, rootfs)
	for name, body := range map[string]string{"etc/removed": "gone\n", "data/old1": "old\n", "data/sub/old2": "old\n", "keep": "kept\n"} {
		p := filepath.Join(rootfs, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l1 := layerOf(t, tarDir(t, rootfs))
	l2 := layerOf(t, tarOf(t,
		entry{name: "etc/", typ: tar.TypeDir},
		entry{name: "etc/.wh.removed"},
		entry{name: "etc/added", body: "added\n"},
		entry{name: "data/", typ: tar.TypeDir},
		entry{name: "data/.wh..wh..opq"},
		entry{name: "data/new", body: "new\n"},
	))
	img, err := mutate.AppendLayers(empty.Image, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{
		Env:          []string{"PATH=/bin:/sbin", "GREETING=hi"},
		Entrypoint:   []string{"/bin/sh", "-c"},
		Cmd:          []string{"echo hello"},
		WorkingDir:   "/data",
		User:         "nobody",
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
	}
	base, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	top, err = mutate.AppendLayers(base, layerOf(t, tarOf(t, entry{name: "etc/third", body: "3\n"})))
	if err != nil {
		t.Fatal(err)
	}
	return base, top
}

// dockerArchive writes a `docker save` archive of refs → images.
func dockerArchive(t testing.TB, images map[string]v1.Image) string {
	t.Helper()
	m := map[name.Reference]v1.Image{}
	for ref, img := range images {
		tag, err := name.NewTag(ref)
		if err != nil {
			t.Fatal(err)
		}
		m[tag] = img
	}
	p := filepath.Join(t.TempDir(), "docker.tar")
	if err := tarball.MultiRefWriteToFile(p, m); err != nil {
		t.Fatal(err)
	}
	return p
}

// ociArchive writes an OCI image layout archive holding images, each annotated with its name.
func ociArchive(t testing.TB, images map[string]v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for ref, img := range images {
		if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "oci.tar")
	if err := os.WriteFile(p, tarDir(t, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func digestOf(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// layerDirs lists the unpacked layers in the store.
func layerDirs(t testing.TB, s *Store) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.Root(), "layers", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, "sha256:"+e.Name())
	}
	return out
}

// mountsUnder returns the lines of /proc/self/mountinfo whose mount point is under dir.
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, line)
		}
	}
	return out
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type v1Image = v1.Image

// imageOf makes a one-layer image of an uncompressed layer tar.
func imageOf(t testing.TB, layer []byte) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layerOf(t, layer))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// lowerDirs returns the overlayfs lower dirs of the mount at mountpoint, from /proc/self/mountinfo
// ("lowerdir=a:b" or, when mounted with fsconfig, "lowerdir+=a,lowerdir+=b").
func lowerDirs(t testing.TB, mountpoint string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[4] != mountpoint {
			continue
		}
		var out []string
		for _, o := range strings.Split(f[len(f)-1], ",") {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				out = append(out, strings.Split(v, ":")...)
			} else if v, ok := strings.CutPrefix(o, "lowerdir+="); ok {
				out = append(out, v)
			}
		}
		return out
	}
	t.Fatalf("%s is not mounted", mountpoint)
	return nil
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
