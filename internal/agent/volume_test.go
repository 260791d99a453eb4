package agent

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

func volumeAgent(t *testing.T) *Agent {
	return &Agent{cfg: Config{Root: t.TempDir()}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		containers: map[string]*container{}, names: map[string]string{}}
}

// TestVolumeInUse: a volume named by a container, or by a create under way (its name reserved, the
// container not yet in the table), cannot be removed; once the create fails (the name released) it can.
func TestVolumeInUse(t *testing.T) {
	a := volumeAgent(t)
	v, err := a.CreateVolume(api.VolumeCreate{Name: "data", Labels: map[string]string{"k": "v"}})
	if err != nil || v.Mountpoint != filepath.Join(a.cfg.Root, "volumes", "data", "_data") || v.Driver != "local" {
		t.Fatalf("create: %+v %v", v, err)
	}
	if again, err := a.CreateVolume(api.VolumeCreate{Name: "data"}); err != nil || again.Labels["k"] != "v" {
		t.Errorf("a second create: %+v %v, want the volume as it was", again, err)
	}
	if _, err := a.Volume("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing volume: %v", err)
	}

	// A create under way.
	id := newID()
	if _, err := a.reserveName("c1", id); err != nil {
		t.Fatal(err)
	}
	if err := a.prepareMounts(id, []api.Mount{{Type: api.MountVolume, Source: "data", Destination: "/d"}, {Type: api.MountVolume, Source: "fresh", Destination: "/e"}}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Volume("fresh"); err != nil {
		t.Errorf("a volume named by a create was not made: %v", err)
	}
	if err := a.RemoveVolume("data", true); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), api.ShortID(id)) {
		t.Errorf("rm during the create: %v, want a conflict naming it", err)
	}
	// The create completes: the container names the volume.
	a.containers[id] = &container{rec: api.Container{ID: id, Name: "c1", Config: api.ContainerCreate{Mounts: []api.Mount{{Type: api.MountVolume, Source: "data", Destination: "/d"}}}}}
	if err := a.RemoveVolume("data", false); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("rm while a container names it: %v", err)
	}
	// Gone again, and a failed create (name released) holds nothing.
	delete(a.containers, id)
	a.releaseName("c1", id)
	if err := a.RemoveVolume("data", false); err != nil {
		t.Errorf("rm of an unused volume: %v", err)
	}
	if err := a.RemoveVolume("data", false); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("rm of a removed volume: %v", err)
	}
	if err := a.RemoveVolume("data", true); err != nil {
		t.Errorf("rm -f of a missing volume: %v", err)
	}
	if vs, err := a.Volumes(); err != nil || len(vs) != 1 || vs[0].Name != "fresh" {
		t.Errorf("ls: %+v %v", vs, err)
	}
}

// TestCopyUpStaysInRoot: an image whose mount target is a symlink out of the image (absolute or by
// ..) has it resolved inside the image: the host's directory is never copied into the volume.
func TestCopyUpStaysInRoot(t *testing.T) {
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "secret"), []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	for _, d := range []string{"real", filepath.Join("inroot", strings.TrimPrefix(host, "/"))} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "real", "f"), []byte("image"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"abs": host, "dotdot": "../../../../../../../../" + host} {
		if err := os.Symlink(target, filepath.Join(rootfs, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range []string{"/abs", "/dotdot"} {
		data := t.TempDir()
		if err := copyUp(rootfs, target, data); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if _, err := os.Stat(filepath.Join(data, "secret")); err == nil {
			t.Errorf("copy-up of %s copied the host's %s", target, host)
		}
	}
	data := t.TempDir()
	if err := copyUp(rootfs, "/real", data); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(data, "f")); err != nil || string(b) != "image" {
		t.Errorf("copy-up of /real: %q %v", b, err)
	}
	if err := copyUp(rootfs, "/missing", t.TempDir()); err != nil {
		t.Errorf("copy-up of a path the image lacks: %v", err)
	}
}
