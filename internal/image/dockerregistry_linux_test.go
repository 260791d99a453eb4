package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/testutil"
)

// loadTop loads the three-layer test image into s as ref.
func loadTop(t *testing.T, s *Store, ref string) {
	t.Helper()
	_, top := testImages(t)
	if _, err := s.LoadFile(context.Background(), dockerArchive(t, map[string]v1.Image{"app:v1": top}), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tag(context.Background(), "app:v1", ref); err != nil {
		t.Fatal(err)
	}
}

// TestDockerRegistryBasicAuth pushes to and pulls from Debian's docker-registry with htpasswd auth:
// refused without or with wrong credentials (naming ovctl login), accepted with them; a second pull
// GETs no layer blob.
func TestDockerRegistryBasicAuth(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{User: "alice", Password: "s3cret"})
	alice := Auth{Username: "alice", Password: "s3cret"}
	ctx := context.Background()
	ref := reg.Host + "/team/app:v1"
	a := newStore(t)
	loadTop(t, a, ref)
	if _, err := a.Push(ctx, ref, PullOptions{}); !errors.Is(err, errdefs.ErrUnauthorized) || !strings.Contains(err.Error(), "ovctl login "+reg.Host) {
		t.Fatalf("anonymous push: %v, want unauthorized naming ovctl login", err)
	}
	if err := a.Login(ctx, reg.Host, Auth{Username: "alice", Password: "wrong"}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("login with a wrong password: %v, want unauthorized", err)
	}
	if err := a.Login(ctx, reg.Host, alice); err != nil {
		t.Fatalf("login: %v", err)
	}
	if _, err := a.Push(ctx, ref, PullOptions{Auth: alice}); err != nil {
		t.Fatal(err)
	}

	b := newStore(t)
	if _, err := b.Pull(ctx, ref, PullOptions{Auth: Auth{Username: "alice", Password: "wrong"}}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("pull with a wrong password: %v, want unauthorized", err)
	}
	if _, err := b.Pull(ctx, reg.Host+"/team/nope:v1", PullOptions{Auth: alice}); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "manifest unknown") {
		t.Fatalf("pull of an unknown image: %v, want not found, manifest unknown", err)
	}
	before := reg.Requests(t, "GET", "/blobs/sha256:")
	if _, err := b.Pull(ctx, ref, PullOptions{Auth: alice}); err != nil {
		t.Fatal(err)
	}
	first := reg.Requests(t, "GET", "/blobs/sha256:") - before
	if first < 4 { // three layers and the config
		t.Fatalf("first pull made %d blob GETs, want >= 4 (is the registry's log format as expected? %s)", first, reg.Log)
	}
	if got := rootfsFile(t, b, "c", ref, "etc/third"); got != "3\n" {
		t.Errorf("pulled etc/third = %q", got)
	}
	if _, err := b.Pull(ctx, ref, PullOptions{Auth: alice}); err != nil {
		t.Fatal(err)
	}
	if again := reg.Requests(t, "GET", "/blobs/sha256:") - before - first; again > 1 {
		t.Errorf("second pull made %d blob GETs, want at most 1 (the config): layers were fetched again", again)
	}
}

// TestDockerRegistryTLS: docker-registry over TLS with a CA made by the test is refused until the CA
// is in the certs dir (the error names the file), then push and pull work.
func TestDockerRegistryTLS(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: true})
	ctx := context.Background()
	ref := reg.Host + "/app:tls"
	certs := t.TempDir()
	a := newStore(t)
	a.cfg.Registry.CertsDir = certs
	loadTop(t, a, ref)
	caFile := filepath.Join(certs, reg.Host, "ca.crt")
	if _, err := a.Push(ctx, ref, PullOptions{}); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), caFile) {
		t.Fatalf("push to an untrusted registry: %v, want unavailable naming %s", err, caFile)
	}
	if err := os.MkdirAll(filepath.Dir(caFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, reg.CA, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Push(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	b := newStore(t)
	b.cfg.Registry.CertsDir = certs
	if _, err := b.Pull(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := rootfsFile(t, b, "c", ref, "etc/added"); got != "added\n" {
		t.Errorf("pulled etc/added = %q", got)
	}
}
