package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/testutil"
)

// fuzzOutside is the directory of this process's fuzzed layers, beside a sentinel, at a path the seeds
// name absolutely and by ../: nothing an archive holds may change it.
var fuzzOutside = filepath.Join(os.TempDir(), fmt.Sprintf("ov-fuzz-unpack-%d", os.Getpid()))

const fuzzSentinel = "the unpacker must never write here\n"

// FuzzUnpack unpacks any byte stream as an image layer, a bottom layer and an image archive, as root
// (owners, device nodes, xattrs are real), into a fresh directory beside a sentinel directory. It never
// panics; it never writes outside the layer directory (the sentinel file and directory stay as they
// were, nothing new appears beside the layers); and what it writes is bounded by the input (file
// content written <= bytes read: a sparse entry may not expand a small archive into a huge file). A
// file size limit (RLIMIT_FSIZE, 64 MiB, while unpacking) keeps a failure from filling the disk.
func FuzzUnpack(f *testing.F) {
	testutil.RequireRoot(f)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		f.Fatal(err)
	}
	lim := old
	lim.Cur = 64 << 20
	if err := os.MkdirAll(filepath.Join(fuzzOutside, "dir"), 0o755); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = os.RemoveAll(fuzzOutside) })
	sentinel := filepath.Join(fuzzOutside, "sentinel")
	if err := os.WriteFile(sentinel, []byte(fuzzSentinel), 0o644); err != nil {
		f.Fatal(err)
	}
	out := fuzzOutside
	for _, entries := range [][]entry{
		{{name: "etc/", typ: tar.TypeDir}, {name: "etc/passwd", body: "root:x:0:0::/:/bin/sh\n"}, {name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox"}},
		{{name: "up", typ: tar.TypeSymlink, link: ".."}, {name: "up/sentinel", body: "escaped"}},
		{{name: "abs", typ: tar.TypeSymlink, link: out}, {name: "abs/sentinel", body: "escaped"}, {name: "abs/dir/new", body: "escaped"}},
		{{name: "../sentinel", body: "escaped"}, {name: "/../../" + out + "/sentinel", body: "escaped"}},
		{{name: "hard", typ: tar.TypeLink, link: "../sentinel"}, {name: "hard2", typ: tar.TypeLink, link: out + "/sentinel"}},
		{{name: "l", typ: tar.TypeSymlink, link: out + "/sentinel"}, {name: "h", typ: tar.TypeLink, link: "l"}, {name: "h", body: "through the link"}},
		{{name: "d/", typ: tar.TypeDir}, {name: "d/.wh.x", body: ""}, {name: "d/.wh..wh..opq"}, {name: ".wh.d"}},
		{{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3}, {name: "fifo", typ: tar.TypeFifo}},
		{{name: "x", body: "a", xattrs: map[string]string{"user.a": "b", "trusted.overlay.opaque": "y", "security.capability": "z"}}},
		{{name: "manifest.json", body: `[{"Config":"c.json","RepoTags":["a:b"],"Layers":["l.tar"]}]`}, {name: "c.json", body: `{}`}, {name: "l.tar", typ: tar.TypeSymlink, link: out + "/sentinel"}},
	} {
		data := tarOf(f, entries...)
		for mode := byte(0); mode < 3; mode++ {
			f.Add(mode, data)
		}
	}
	f.Add(byte(0), []byte("not a tar stream"))
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		layer, err := os.MkdirTemp(fuzzOutside, "layer-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(layer)
		m := []unpackMode{modeLayer, modeBaseLayer, modeArchive}[int(mode)%3]
		// The limit holds only while unpacking: the fuzzing engine's own files are larger.
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &lim); err != nil {
			t.Fatal(err)
		}
		stats, err := unpack(context.Background(), bytes.NewReader(data), layer, m, "fuzz")
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
		if err == nil && stats.size > int64(len(data)) {
			t.Fatalf("unpacked %d bytes of file content from a %d-byte archive", stats.size, len(data))
		}
		if err != nil && strings.Contains(err.Error(), "file too large") {
			t.Fatalf("unpacking a %d-byte archive hit the 64 MiB file size limit: %v", len(data), err)
		}
		if b, err := os.ReadFile(sentinel); err != nil || string(b) != fuzzSentinel {
			t.Fatalf("the sentinel outside the layer changed: %q %v", b, err)
		}
		if ents, _ := os.ReadDir(filepath.Join(fuzzOutside, "dir")); len(ents) != 0 {
			t.Fatalf("%s appeared outside the layer", ents[0].Name())
		}
		ents, err := os.ReadDir(fuzzOutside)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if n := e.Name(); n != "dir" && n != "sentinel" && !strings.HasPrefix(n, "layer-") {
				t.Fatalf("%s appeared beside the layer", filepath.Join(fuzzOutside, n))
			}
		}
	})
}
