package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/agent/client"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/image"
)

// fakeRegistry is an image store that "pulls" by telling two events and records the credentials.
type fakeRegistry struct {
	noImages
	auth image.Auth
	err  error
}

func (f *fakeRegistry) Pull(_ context.Context, ref string, o image.PullOptions) (image.Image, error) {
	f.auth = o.Auth
	o.Progress(image.PullEvent{Layer: "aaa", Status: "Pulling fs layer"})
	o.Progress(image.PullEvent{Layer: "aaa", Status: "Downloading", Current: 5, Total: 10})
	if f.err != nil {
		return image.Image{}, f.err
	}
	return image.Image{ID: "sha256:abc", RepoTags: []string{ref}}, nil
}
func (f *fakeRegistry) Push(_ context.Context, ref string, o image.PullOptions) (string, error) {
	f.auth = o.Auth
	return "sha256:def", f.err
}
func (f *fakeRegistry) Tag(_ context.Context, src, dst string) (image.Image, error) {
	return image.Image{ID: "sha256:abc", RepoTags: []string{src, dst}}, f.err
}
func (f *fakeRegistry) Login(_ context.Context, reg string, a image.Auth) error {
	f.auth = a
	return f.err
}

// TestRegistryAPI: pull streams its progress to the client, the credentials reach the store with the
// request, and a failure arrives as the last line with its class and message.
func TestRegistryAPI(t *testing.T) {
	dir := t.TempDir()
	fake := &fakeRegistry{}
	cfg := DefaultConfig()
	cfg.Root, cfg.RunDir = filepath.Join(dir, "lib"), filepath.Join(dir, "run")
	cfg.Runtime, cfg.ShimCommand, cfg.Images = "/bin/true", []string{"/bin/false"}, fake
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.Handler()}
	go srv.Serve(l)
	defer srv.Close()
	cl := client.New(sock)
	ctx := t.Context()

	var evs []api.ImagePullEvent
	auth := &api.RegistryAuth{Username: "alice", Password: "pw", ServerAddress: "reg:5000"}
	img, err := cl.PullImage(ctx, api.ImagePull{Ref: "reg:5000/app:1", Auth: auth}, func(e api.ImagePullEvent) { evs = append(evs, e) })
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != "sha256:abc" || len(evs) != 2 || evs[1].Status != "Downloading" || evs[1].Current != 5 {
		t.Fatalf("pull: image %+v, events %+v", img, evs)
	}
	if fake.auth != (image.Auth{Username: "alice", Password: "pw"}) {
		t.Errorf("the store got credentials %+v", fake.auth)
	}
	if d, err := cl.PushImage(ctx, api.ImagePull{Ref: "reg:5000/app:1"}, nil); err != nil || d != "sha256:def" || fake.auth != (image.Auth{}) {
		t.Errorf("push: %q %v, auth %+v", d, err, fake.auth)
	}
	if img, err := cl.TagImage(ctx, "app:1", "reg:5000/app:1"); err != nil || len(img.Refs) != 2 {
		t.Errorf("tag: %+v %v", img, err)
	}
	if _, err := cl.PullImage(ctx, api.ImagePull{}, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("pull without a reference: %v", err)
	}

	fake.err = errors.Join(errdefs.ErrUnauthorized, errors.New("reg:5000 refused access; log in with ovctl login reg:5000"))
	if _, err := cl.PullImage(ctx, api.ImagePull{Ref: "reg:5000/app:1"}, nil); !errors.Is(err, errdefs.ErrUnauthorized) || !strings.Contains(err.Error(), "ovctl login reg:5000") {
		t.Errorf("refused pull: %v", err)
	}
	if err := cl.Login(ctx, *auth); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("refused login: %v", err)
	}
}
