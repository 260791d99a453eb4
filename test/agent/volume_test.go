package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/agent/client"
	"github.com/ovnet/ov/internal/errdefs"
)

// volumeInspect returns `ovctl volume inspect name`.
func (l *lab) volumeInspect(name string) api.Volume {
	l.t.Helper()
	var vs []api.Volume
	if err := json.Unmarshal([]byte(l.must("volume", "inspect", name)), &vs); err != nil || len(vs) != 1 {
		l.t.Fatalf("volume inspect %s: %v", name, err)
	}
	return vs[0]
}

// wantFail runs ovctl, wants exit code code and stderr containing each of words.
func (l *lab) wantFail(code int, words []string, args ...string) {
	l.t.Helper()
	out, errs, got := l.ctl(args...)
	if got != code {
		l.t.Errorf("ovctl %s: exit %d, want %d (stdout %q, stderr %q)", strings.Join(args, " "), got, code, out, errs)
	}
	for _, w := range words {
		if !strings.Contains(errs, w) {
			l.t.Errorf("ovctl %s: stderr %q, want it to contain %q", strings.Join(args, " "), errs, w)
		}
	}
}

// TestVolumes: a named volume's life cycle as docker's: created (by volume create or by its first -v),
// shared by containers, kept after they are removed and across an agent restart, filled from the
// image on first use, refused removal while a container names it.
func TestVolumes(t *testing.T) {
	l := newLab(t)
	run := func(args ...string) string {
		t.Helper()
		return l.must(append([]string{"run", "--rm", "--network", "none"}, args...)...)
	}

	if got := strings.TrimSpace(l.must("volume", "create", "--label", "tier=db", "data")); got != "data" {
		t.Fatalf("volume create printed %q, want the name", got)
	}
	v := l.volumeInspect("data")
	if v.Name != "data" || v.Driver != "local" || v.Labels["tier"] != "db" || v.CreatedAt.IsZero() ||
		v.Mountpoint != filepath.Join(l.dir, "lib", "volumes", "data", "_data") {
		t.Errorf("volume inspect: %+v", v)
	}

	t.Run("shared by containers and kept after they go", func(t *testing.T) {
		run("-v", "data:/data", "busybox", "sh", "-c", "echo hello > /data/f")
		if got := run("--mount", "type=volume,source=data,target=/mnt,readonly", "busybox", "cat", "/mnt/f"); got != "hello\n" {
			t.Errorf("second container read %q, want hello", got)
		}
		l.wantFail(1, []string{"Read-only file system"}, "run", "--rm", "--network", "none", "-v", "data:/data:ro", "busybox", "touch", "/data/g")
		if b, err := os.ReadFile(filepath.Join(v.Mountpoint, "f")); err != nil || string(b) != "hello\n" {
			t.Errorf("the volume's directory holds %q, %v", b, err)
		}
	})

	t.Run("created on first use and filled from the image", func(t *testing.T) {
		// The image's /usr/sbin holds busybox's applets as symlinks, /tmp is 1777.
		if got := run("-v", "sbin:/usr/sbin", "busybox", "readlink", "/usr/sbin/chroot"); got != "/bin/busybox\n" {
			t.Errorf("readlink in the container: %q, want /bin/busybox (copied from the image)", got)
		}
		sbin := l.volumeInspect("sbin").Mountpoint
		if target, err := os.Readlink(filepath.Join(sbin, "chroot")); err != nil || target != "/bin/busybox" {
			t.Errorf("volume sbin: chroot -> %q, %v; want the image's symlink", target, err)
		}
		run("-v", "tmpv:/tmp", "busybox", "true")
		if fi, err := os.Stat(l.volumeInspect("tmpv").Mountpoint); err != nil || fi.Mode()&(os.ModePerm|os.ModeSticky) != 0o777|os.ModeSticky {
			t.Errorf("volume tmpv: %v %v, want drwxrwxrwt like the image's /tmp", fi.Mode(), err)
		}
		// Not empty any more: no copy over what is there.
		run("-v", "sbin:/usr/sbin", "busybox", "rm", "/usr/sbin/chroot")
		if _, _, code := l.ctl("run", "--rm", "--network", "none", "-v", "sbin:/usr/sbin", "busybox", "ls", "/usr/sbin/chroot"); code != 1 {
			t.Errorf("the image's file came back into a volume that was not empty")
		}
		// nocopy: an empty volume stays empty.
		if got := run("-v", "empty1:/usr/sbin:nocopy", "busybox", "ls", "-A", "/usr/sbin"); got != "" {
			t.Errorf("nocopy volume holds %q", got)
		}
	})

	t.Run("removal refused while a container uses it", func(t *testing.T) {
		id := l.runD("--network", "none", "--name", "user", "-v", "data:/data", "busybox", "sleep", "60")
		l.wantFail(1, []string{"volume is in use", api.ShortID(id)}, "volume", "rm", "data")
		l.must("stop", "-t", "0", "user")
		l.wantFail(1, []string{"volume is in use"}, "volume", "rm", "data") // exited containers count too (docker)
		if _, err := os.Stat(filepath.Join(v.Mountpoint, "f")); err != nil {
			t.Errorf("a refused rm touched the volume: %v", err)
		}
		l.must("rm", "-v", "user") // docker keeps named volumes on rm -v
	})

	t.Run("kept across an agent restart", func(t *testing.T) {
		l.term()
		l.start()
		if got := strings.Fields(l.must("volume", "ls", "-q")); strings.Join(got, " ") != "data empty1 sbin tmpv" {
			t.Errorf("volume ls -q after a restart: %q", got)
		}
		if got := run("-v", "data:/data", "busybox", "cat", "/data/f"); got != "hello\n" {
			t.Errorf("after a restart the volume holds %q", got)
		}
	})

	t.Run("rm", func(t *testing.T) {
		l.must("volume", "rm", "data", "sbin", "tmpv", "empty1")
		if _, err := os.Stat(filepath.Dir(v.Mountpoint)); !os.IsNotExist(err) {
			t.Errorf("volume rm left %s: %v", filepath.Dir(v.Mountpoint), err)
		}
		l.wantFail(1, []string{"no such volume"}, "volume", "rm", "data")
		l.must("volume", "rm", "-f", "data")
		l.wantFail(125, []string{"invalid characters for a local volume name"}, "run", "--rm", "-v", "x:/x", "busybox", "true")
	})
}

// TestMountFlags: --mount and --tmpfs make the mounts docker makes, and a missing bind source is
// docker's error.
func TestMountFlags(t *testing.T) {
	l := newLab(t)
	mountLine := func(args ...string) string {
		t.Helper()
		return l.must(append([]string{"run", "--rm", "--network", "none"}, args...)...)
	}
	cases := []struct {
		name string
		args []string
		want []string // in the target's /proc/mounts line
		not  []string
	}{
		{"--mount tmpfs with size and mode", []string{"--mount", "type=tmpfs,target=/cache,tmpfs-size=1m,tmpfs-mode=1770", "busybox", "grep", " /cache ", "/proc/mounts"},
			[]string{"tmpfs /cache tmpfs rw,", "nosuid", "nodev", "noexec", "size=1024k", "mode=1770"}, nil},
		{"--tmpfs defaults", []string{"--tmpfs", "/run2", "busybox", "grep", " /run2 ", "/proc/mounts"},
			[]string{"tmpfs /run2 tmpfs rw,", "nosuid", "nodev", "noexec"}, []string{"size="}},
		{"--tmpfs exec and size", []string{"--tmpfs", "/run2:exec,size=2m", "busybox", "grep", " /run2 ", "/proc/mounts"},
			[]string{"size=2048k"}, []string{"noexec"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := mountLine(tc.args...)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("mount %q lacks %q", got, w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(got, w) {
					t.Errorf("mount %q has %q", got, w)
				}
			}
		})
	}
	t.Run("tmpfs size is enforced", func(t *testing.T) {
		l.wantFail(1, []string{"No space left on device"}, "run", "--rm", "--network", "none", "--tmpfs", "/small:size=1m",
			"busybox", "dd", "if=/dev/zero", "of=/small/f", "bs=1024", "count=2048")
	})

	t.Run("bind sources", func(t *testing.T) {
		missing := filepath.Join(l.dir, "no-such-dir")
		l.wantFail(125, []string{"bind source path does not exist: " + missing}, "run", "--rm", "--network", "none",
			"--mount", "type=bind,source="+missing+",target=/x", "busybox", "true")
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Errorf("--mount made the missing source: %v", err)
		}
		// -v makes it, as docker does.
		mountLine("-v", missing+":/x", "busybox", "touch", "/x/made")
		if _, err := os.Stat(filepath.Join(missing, "made")); err != nil {
			t.Errorf("-v with a missing host path: %v", err)
		}
		out := mountLine("--mount", "type=bind,src="+missing+",dst=/x,ro", "busybox", "grep", " /x ", "/proc/mounts")
		if !strings.Contains(out, " ro,") {
			t.Errorf("--mount ...,ro: %q is not read-only", out)
		}
	})
	l.wantFail(125, []string{`unexpected key "colour"`}, "run", "--rm", "--mount", "type=tmpfs,target=/x,colour=red", "busybox", "true")
}

// TestCLICompat: the small docker-isms of issue 11: version as text, --format, an unknown image said
// once, network inspect listing the containers.
func TestCLICompat(t *testing.T) {
	l := newLab(t)
	out := l.must("version")
	for _, w := range []string{"Client:\n Version:", "API version:", "Go version:", "OS/Arch:", "Server:\n Engine:\n  Version:"} {
		if !strings.Contains(out, w) {
			t.Errorf("version: %q lacks %q", out, w)
		}
	}
	var v struct{ Client, Server api.Version }
	if err := json.Unmarshal([]byte(l.must("version", "-f", "json")), &v); err != nil || v.Server.APIVersion != api.AgentAPIVersion || v.Client.GoVersion == "" {
		t.Errorf("version -f json: %+v %v", v, err)
	}
	if got := l.must("version", "--format", "{{.Server.APIVersion}}"); got != api.AgentAPIVersion+"\n" {
		t.Errorf("version --format: %q", got)
	}

	// The agent's answer (ovctl run then pulls, see the registry tests): the image named once.
	_, err := client.New(l.sock).Create(context.Background(), api.ContainerCreate{Image: "nosuchimage"})
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.HasPrefix(err.Error(), "Unable to find image 'nosuchimage:latest' locally;") || strings.Count(err.Error(), "nosuchimage") != 1 {
		t.Errorf("create of an unknown image: %v; want not found, the image named once", err)
	}

	l.must("network", "create", "--subnet", "10.231.0.0/24", "fmtnet")
	id := l.runD("--name", "fmt1", "--network", "fmtnet", "busybox", "sleep", "60")
	if got := l.must("ps", "--format", "table {{.Names}}\t{{.Networks}}\t{{.State}}"); !strings.Contains(got, "NAMES") || !strings.Contains(got, "fmt1") || !strings.Contains(got, "fmtnet") || !strings.Contains(got, "running") {
		t.Errorf("ps --format table: %q", got)
	}
	if got := l.must("inspect", "-f", "{{.State.Status}} {{.Name}}", "fmt1"); got != "running fmt1\n" {
		t.Errorf("inspect -f: %q", got)
	}
	if got := l.must("image", "ls", "--format", "{{.Repository}}:{{.Tag}}"); got != "busybox:latest\n" {
		t.Errorf("image ls --format: %q", got)
	}
	if got := l.must("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"); !strings.Contains(got, "fmtnet bridge local\n") {
		t.Errorf("network ls --format: %q", got)
	}
	var nets []api.Network
	if err := json.Unmarshal([]byte(l.must("network", "inspect", "fmtnet")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("network inspect: %v", err)
	}
	ep, ok := nets[0].Containers[id]
	if !ok || ep.Name != "fmt1" || !strings.HasPrefix(ep.IPv4Address, l.ip("fmt1")+"/24") || len(ep.EndpointID) != 64 || ep.MacAddress == "" {
		t.Errorf("network inspect containers: %+v, want fmt1 with its address", nets[0].Containers)
	}
	l.must("rm", "-f", "fmt1")
	l.must("network", "rm", "fmtnet")
}
