package image

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ovnet/ov/internal/errdefs"
)

// blobLog counts a registry's requests: layer blob GETs and blob uploads (POST/PUT/PATCH).
type blobLog struct {
	mu      sync.Mutex
	gets    map[string]int // digest -> GETs
	uploads int
}

func (b *blobLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
			b.gets[r.URL.Path[i+len("/blobs/"):]]++
		}
		if strings.Contains(r.URL.Path, "/blobs/uploads") && r.Method != http.MethodGet {
			b.uploads++
		}
		b.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (b *blobLog) get(d string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gets[d]
}

func (b *blobLog) total() (gets, uploads int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.gets {
		gets += n
	}
	return gets, b.uploads
}

// testRegistry serves an in-memory OCI registry (go-containerregistry's) on loopback over plain
// HTTP, wrapped by mw (nil: none), and returns its host:port and request log.
func testRegistry(t *testing.T, mw func(http.Handler) http.Handler) (string, *blobLog) {
	t.Helper()
	bl := &blobLog{gets: map[string]int{}}
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	h = bl.wrap(h)
	if mw != nil {
		h = mw(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), bl
}

func putImage(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

// rootfsFile prepares a container of ref and reads file from its rootfs ("" when absent).
func rootfsFile(t *testing.T, s *Store, id, ref, file string) string {
	t.Helper()
	root, err := s.Prepare(context.Background(), id, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release(context.Background(), id)
	b, err := os.ReadFile(filepath.Join(root, file))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPullSkipsPresentLayers: a pull fetches each layer once; pulling again, or pulling another image
// that shares layers, GETs no layer blob the store has, and says "Already exists" for it.
func TestPullSkipsPresentLayers(t *testing.T) {
	s := newStore(t)
	host, bl := testRegistry(t, nil)
	base, top := testImages(t)
	putImage(t, host+"/app:top", top)
	putImage(t, host+"/app:base", base)
	ctx := context.Background()

	var events []PullEvent
	img, err := s.Pull(ctx, host+"/app:top", PullOptions{Progress: func(e PullEvent) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{host + "/app:top"}; strings.Join(img.RepoTags, ",") != strings.Join(want, ",") {
		t.Fatalf("tags %v, want %v", img.RepoTags, want)
	}
	for _, d := range layerDigests(t, top) {
		if n := bl.get(d); n != 1 {
			t.Errorf("first pull: layer %s fetched %d times, want 1", shortID(d), n)
		}
	}
	if got := rootfsFile(t, s, "c1", host+"/app:top", "etc/third"); got != "3\n" {
		t.Errorf("etc/third = %q", got)
	}
	if got := rootfsFile(t, s, "c2", host+"/app:top", "etc/removed"); got != "" {
		t.Errorf("whiteout lost: etc/removed = %q", got)
	}
	if !hasEvent(events, "Pull complete") || !hasEvent(events, "Status: Downloaded newer image for "+host+"/app:top") {
		t.Errorf("events %+v lack Pull complete / Status", events)
	}

	gets, _ := bl.total()
	events = nil
	if _, err := s.Pull(ctx, host+"/app:top", PullOptions{Progress: func(e PullEvent) { events = append(events, e) }}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, host+"/app:base", PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if again, _ := bl.total(); again-gets > 2 { // the two configs at most
		t.Errorf("pulling again fetched %d blobs, want only configs (<= 2)", again-gets)
	}
	for _, d := range layerDigests(t, top) {
		if n := bl.get(d); n != 1 {
			t.Errorf("layer %s fetched %d times in all, want 1", shortID(d), n)
		}
	}
	if !hasEvent(events, "Already exists") || !hasEvent(events, "Status: Image is up to date for "+host+"/app:top") {
		t.Errorf("second pull events %+v lack Already exists / up to date", events)
	}
}

func hasEvent(evs []PullEvent, status string) bool {
	for _, e := range evs {
		if e.Status == status {
			return true
		}
	}
	return false
}

// TestPullVerifiesDigests: a registry that serves a blob whose content is not its digest, or an image
// whose config names other diff IDs than its layers have, is refused and leaves nothing behind.
func TestPullVerifiesDigests(t *testing.T) {
	// An uncompressed layer, so that the evil blob has the same size and is a valid tar.
	plain := tarOf(t, entry{name: "good", body: "good\n"})
	good, err := mutate.AppendLayers(empty.Image, static.NewLayer(plain, types.DockerUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	evil := []byte(strings.Replace(string(plain), "good\n", "evil\n", 1))
	target := layerDigests(t, good)[0]
	tamper := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+target) {
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Write(evil)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	host, _ := testRegistry(t, tamper)
	putImage(t, host+"/tampered:v1", good)

	cf, err := imageOf(t, tarOf(t, entry{name: "good", body: "good\n"})).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = mustHash("sha256:" + strings.Repeat("ab", 32))
	lying, err := mutate.ConfigFile(imageOf(t, tarOf(t, entry{name: "x", body: "x\n"})), cf)
	if err != nil {
		t.Fatal(err)
	}
	putImage(t, host+"/lying:v1", lying)

	for _, tc := range []struct{ ref, want string }{
		{"tampered:v1", strings.TrimPrefix(target, "sha256:")},
		{"lying:v1", "but the image config says"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			s := newStore(t)
			_, err := s.Pull(context.Background(), host+"/"+tc.ref, PullOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("pull of a corrupt image: err %v, want one containing %q", err, tc.want)
			}
			t.Log(err)
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("err %v is not invalid_argument", err)
			}
			if imgs, _ := s.List(context.Background()); len(imgs) != 0 {
				t.Errorf("store has %v after a refused pull", imgs)
			}
			if ds := layerDirs(t, s); len(ds) != 0 {
				t.Errorf("layers left behind: %v", ds)
			}
		})
	}
}

// TestPullHostileLayer: a layer from a registry goes through the same unpacker as a loaded archive:
// an entry that climbs out of the layer is refused.
func TestPullHostileLayer(t *testing.T) {
	s := newStore(t)
	host, _ := testRegistry(t, nil)
	putImage(t, host+"/hostile:v1", imageOf(t, tarOf(t, entry{name: "../../escaped", body: "x"})))
	_, err := s.Pull(context.Background(), host+"/hostile:v1", PullOptions{})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("pull of a hostile layer: %v, want invalid_argument", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Root()), "escaped")); err == nil {
		t.Fatal("a pulled layer wrote outside the store")
	}
}

// TestPullErrors: unknown images and refused credentials give errors that name the fix.
func TestPullErrors(t *testing.T) {
	basic := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	open, _ := testRegistry(t, nil)
	locked, _ := testRegistry(t, basic)
	img := imageOf(t, tarOf(t, entry{name: "f", body: "f\n"}))
	putImage(t, open+"/app:v1", img)
	s := newStore(t)
	alice := Auth{Username: "alice", Password: "s3cret"}
	if _, err := s.Push(context.Background(), "missing:v1", PullOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("push of a missing image: %v", err)
	}
	if _, err := s.Pull(context.Background(), open+"/app:v1", PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tag(context.Background(), open+"/app:v1", locked+"/app:v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(context.Background(), locked+"/app:v1", PullOptions{Auth: alice}); err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	for _, tc := range []struct {
		name, ref string
		auth      Auth
		class     error
		want      string
	}{
		{"unknown tag", open + "/app:nope", Auth{}, errdefs.ErrNotFound, "manifest unknown"},
		{"unknown repository", open + "/nope:v1", Auth{}, errdefs.ErrNotFound, "check the name and tag"},
		{"anonymous on a locked registry", locked + "/app:v1", Auth{}, errdefs.ErrUnauthorized, "ovctl login " + locked},
		{"wrong password", locked + "/app:v1", Auth{Username: "alice", Password: "nope"}, errdefs.ErrUnauthorized, "ovctl login " + locked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Pull(context.Background(), tc.ref, PullOptions{Auth: tc.auth})
			t.Log(err)
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("pull %s: %v, want %v containing %q", tc.ref, err, tc.class, tc.want)
			}
		})
	}
	if _, err := s.Pull(context.Background(), locked+"/app:v1", PullOptions{Auth: alice}); err != nil {
		t.Errorf("pull with credentials: %v", err)
	}
	if err := s.Login(context.Background(), locked, alice); err != nil {
		t.Errorf("login with good credentials: %v", err)
	}
	if err := s.Login(context.Background(), locked, Auth{Username: "alice", Password: "x"}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("login with a wrong password: %v, want unauthorized", err)
	}
}

// TestPullIndex: from a multi-platform index the store's platform is taken.
func TestPullIndex(t *testing.T) {
	s := newStore(t)
	host, _ := testRegistry(t, nil)
	mine := imageOf(t, tarOf(t, entry{name: "arch", body: "mine\n"}))
	other := imageOf(t, tarOf(t, entry{name: "arch", body: "other\n"}))
	os, arch, _ := strings.Cut(s.cfg.Platform, "/")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch}}},
	)
	r, _ := name.ParseReference(host + "/multi:v1")
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), host+"/multi:v1", PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := rootfsFile(t, s, "c", host+"/multi:v1", "arch"); got != "mine\n" {
		t.Errorf("pulled the image for another platform: /arch = %q", got)
	}
}

// TestPushPull: an image loaded on one store, pushed, is pulled by another store with the same
// files (whiteouts and opaque directories included); pushing again sends no layer.
func TestPushPull(t *testing.T) {
	a := newStore(t)
	host, bl := testRegistry(t, nil)
	_, top := testImages(t)
	if _, err := a.LoadFile(context.Background(), dockerArchive(t, map[string]v1.Image{"app:v1": top}), nil); err != nil {
		t.Fatal(err)
	}
	ref := host + "/team/app:v1"
	if _, err := a.Tag(context.Background(), "app:v1", ref); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Push(context.Background(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	_, up1 := bl.total()
	var events []PullEvent
	if _, err := a.Push(context.Background(), ref, PullOptions{Progress: func(e PullEvent) { events = append(events, e) }}); err != nil {
		t.Fatal(err)
	}
	if _, up2 := bl.total(); up2 != up1 {
		t.Errorf("pushing again uploaded %d blobs, want 0 (the registry has them)", up2-up1)
	}
	if !hasEvent(events, "Layer already exists") {
		t.Errorf("second push events %+v lack Layer already exists", events)
	}

	b := newStore(t)
	if _, err := b.Pull(context.Background(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"etc/third": "3\n", "etc/added": "added\n", "etc/removed": "", "data/new": "new\n", "data/old1": "", "keep": "kept\n"} {
		if got := rootfsFile(t, b, "c", ref, file); got != want {
			t.Errorf("pulled image: %s = %q, want %q", file, got, want)
		}
	}
	img, err := b.Get(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config.WorkingDir != "/data" || img.Config.User != "nobody" || strings.Join(img.Config.Cmd, " ") != "echo hello" {
		t.Errorf("pulled run config %+v", img.Config)
	}
}

// TestPullTLS: a TLS registry with its own CA is refused until its CA is in CertsDir/HOST/ or it is
// listed as insecure.
func TestPullTLS(t *testing.T) {
	srv := httptest.NewTLSServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	img := imageOf(t, tarOf(t, entry{name: "f", body: "f\n"}))
	r, _ := name.ParseReference(host + "/app:v1")
	if err := remote.Write(r, img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	certs := t.TempDir()
	s := newStore(t)
	s.cfg.Registry.CertsDir = certs
	_, err := s.Pull(context.Background(), host+"/app:v1", PullOptions{})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), filepath.Join(certs, host, "ca.crt")) {
		t.Fatalf("pull from an untrusted TLS registry: %v, want unavailable naming the CA file", err)
	}
	if err := os.MkdirAll(filepath.Join(certs, host), 0o755); err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(certs, host, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), host+"/app:v1", PullOptions{}); err != nil {
		t.Fatalf("pull with the CA in the certs dir: %v", err)
	}
	s2 := newStore(t)
	s2.cfg.Registry.Insecure = []string{"127.0.0.0/8"}
	if _, err := s2.Pull(context.Background(), host+"/app:v1", PullOptions{}); err != nil {
		t.Fatalf("pull from an insecure registry: %v", err)
	}
}
