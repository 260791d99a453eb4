package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/image"
)

func procSpec(t *testing.T, c api.ContainerCreate) (*specs.Spec, string, error) {
	t.Helper()
	bundle := t.TempDir()
	c.Image = "img"
	s, err := buildSpec(specInput{ID: "0123456789abcdef", Create: c, Image: image.RunConfig{Cmd: []string{"sh"}},
		Rootfs: t.TempDir(), Hostname: "h", Bundle: bundle, Cgroup: "/ov/x", InitPath: "/usr/lib/ov/ovinit"})
	return s, bundle, err
}

// TestProcOptionsSpec checks what each ctl-proc option puts in the OCI spec.
func TestProcOptionsSpec(t *testing.T) {
	profile := `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`
	for _, tc := range []struct {
		name  string
		c     api.ContainerCreate
		check func(t *testing.T, s *specs.Spec, bundle string)
	}{
		{"defaults", api.ContainerCreate{}, func(t *testing.T, s *specs.Spec, _ string) {
			if !s.Process.NoNewPrivileges || s.Linux.Seccomp == nil || s.Process.Args[0] != "sh" {
				t.Errorf("nnp %v seccomp %v args %v: want ov's defaults", s.Process.NoNewPrivileges, s.Linux.Seccomp != nil, s.Process.Args)
			}
			if o := mountOpts(s, "/dev/shm"); !slices.Contains(o, "size=65536k") {
				t.Errorf("/dev/shm options %v: want Docker's 64m", o)
			}
		}},
		{"init", api.ContainerCreate{Init: true, Cmd: []string{"sleep", "1"}}, func(t *testing.T, s *specs.Spec, _ string) {
			if want := []string{"/sbin/docker-init", "--", "sleep", "1"}; !slices.Equal(s.Process.Args, want) {
				t.Errorf("args %v, want %v", s.Process.Args, want)
			}
			if got := userCommand(s.Process.Args, true); !slices.Equal(got, []string{"sleep", "1"}) {
				t.Errorf("command shown %v, want sleep 1", got)
			}
			i := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/sbin/docker-init" })
			if i < 0 || s.Mounts[i].Source != "/usr/lib/ov/ovinit" || !slices.Contains(s.Mounts[i].Options, "ro") {
				t.Errorf("no read-only bind of the init at /sbin/docker-init: %+v", s.Mounts)
			}
		}},
		{"device", api.ContainerCreate{Devices: []api.DeviceMapping{{PathOnHost: "/dev/null", PathInContainer: "/dev/mynull", CgroupPermissions: "rw"}}}, func(t *testing.T, s *specs.Spec, _ string) {
			if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/mynull" || s.Linux.Devices[0].Type != "c" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
				t.Errorf("devices %+v, want /dev/mynull c 1:3", s.Linux.Devices)
			}
			last := s.Linux.Resources.Devices[len(s.Linux.Resources.Devices)-1]
			if !last.Allow || last.Type != "c" || *last.Major != 1 || *last.Minor != 3 || last.Access != "rw" {
				t.Errorf("last device rule %+v, want allow c 1:3 rw", last)
			}
		}},
		{"ulimits", api.ContainerCreate{Ulimits: []api.Ulimit{{Name: "nofile", Soft: 100, Hard: 200}, {Name: "core", Soft: -1, Hard: -1}}}, func(t *testing.T, s *specs.Spec, _ string) {
			want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 100, Hard: 200}, {Type: "RLIMIT_CORE", Soft: ^uint64(0), Hard: ^uint64(0)}}
			if !slices.Equal(s.Process.Rlimits, want) {
				t.Errorf("rlimits %+v, want %+v", s.Process.Rlimits, want)
			}
		}},
		{"no-new-privileges=false, seccomp=unconfined", api.ContainerCreate{SecurityOpt: []string{"no-new-privileges=false", "seccomp=unconfined"}}, func(t *testing.T, s *specs.Spec, _ string) {
			if s.Process.NoNewPrivileges || s.Linux.Seccomp != nil {
				t.Errorf("nnp %v seccomp %+v, want both off", s.Process.NoNewPrivileges, s.Linux.Seccomp)
			}
		}},
		{"seccomp profile", api.ContainerCreate{SecurityOpt: []string{"seccomp=" + profile}}, func(t *testing.T, s *specs.Spec, _ string) {
			if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActAllow || len(s.Linux.Seccomp.Syscalls) != 1 {
				t.Errorf("seccomp %+v, want the profile's", s.Linux.Seccomp)
			}
		}},
		{"shm size", api.ContainerCreate{ShmSize: 128 << 20}, func(t *testing.T, s *specs.Spec, _ string) {
			if o := mountOpts(s, "/dev/shm"); !slices.Contains(o, "size=134217728") || slices.Contains(o, "size=65536k") {
				t.Errorf("/dev/shm options %v, want size=134217728 alone", o)
			}
		}},
		{"add-host", api.ContainerCreate{ExtraHosts: []string{"db:10.0.0.5", "v6:::1", "gw:host-gateway"}}, func(t *testing.T, _ *specs.Spec, bundle string) {
			b, _ := os.ReadFile(filepath.Join(bundle, "hosts"))
			if !strings.Contains(string(b), "10.0.0.5\tdb\n::1\tv6\n") || strings.Contains(string(b), "gw") {
				t.Errorf("hosts file:\n%s\nwant db and v6, gw only once the gateway is known", b)
			}
			if got := strings.Join(extraHosts([]string{"gw:host-gateway"}, "10.1.0.1"), ""); got != "10.1.0.1\tgw\n" {
				t.Errorf("host-gateway with a gateway: %q", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, bundle, err := procSpec(t, tc.c)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s, bundle)
		})
	}
}

func TestProcOptionsSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    api.ContainerCreate
		want string
	}{
		{"not a device", api.ContainerCreate{Devices: []api.DeviceMapping{{PathOnHost: "/etc/passwd", PathInContainer: "/dev/x", CgroupPermissions: "rwm"}}}, "not a character or block device"},
		{"missing device", api.ContainerCreate{Devices: []api.DeviceMapping{{PathOnHost: "/dev/nope-ov", PathInContainer: "/dev/x", CgroupPermissions: "rwm"}}}, "give a device node of this host"},
		{"bad profile", api.ContainerCreate{SecurityOpt: []string{`seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}`}}, "not a valid Docker seccomp profile"},
		{"unknown group", api.ContainerCreate{GroupAdd: []string{"ghost"}}, `--group-add "ghost": no such group`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := procSpec(t, tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("init without ovinit", func(t *testing.T) {
		_, err := buildSpec(specInput{ID: "x", Create: api.ContainerCreate{Image: "i", Init: true, Cmd: []string{"sh"}}, Rootfs: t.TempDir(), Bundle: t.TempDir(), HostNet: true})
		if err == nil || !strings.Contains(err.Error(), "--init-path") {
			t.Fatalf("err = %v, want one naming --init-path", err)
		}
	})
}

func TestStopDefaults(t *testing.T) {
	five, never := 5, -1
	for _, tc := range []struct {
		name  string
		cfg   api.ContainerCreate
		asked time.Duration
		sig   syscall.Signal
		want  time.Duration
	}{
		{"docker's defaults", api.ContainerCreate{}, -1, syscall.SIGTERM, 10 * time.Second},
		{"stop -t wins", api.ContainerCreate{StopTimeout: &five}, 2 * time.Second, syscall.SIGTERM, 2 * time.Second},
		{"--stop-timeout", api.ContainerCreate{StopTimeout: &five, StopSignal: "SIGQUIT"}, -1, syscall.SIGQUIT, 5 * time.Second},
		{"for ever", api.ContainerCreate{StopTimeout: &never, StopSignal: "usr1"}, -1, syscall.SIGUSR1, time.Duration(1<<63 - 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stopTimeout(tc.cfg, tc.asked); got != tc.want {
				t.Errorf("timeout %v, want %v", got, tc.want)
			}
			if got := stopSignal(tc.cfg); got != tc.sig {
				t.Errorf("signal %v, want %v", got, tc.sig)
			}
		})
	}
	req := api.ContainerCreate{Labels: map[string]string{"a": "mine"}}
	procDefaults(&req, image.RunConfig{StopSignal: "SIGINT", Labels: map[string]string{"a": "image", "b": "image"}})
	if req.StopSignal != "SIGINT" || req.Labels["a"] != "mine" || req.Labels["b"] != "image" {
		t.Errorf("procDefaults: %+v, want the image's stop signal and labels under the container's", req)
	}
	req = api.ContainerCreate{StopSignal: "SIGHUP"}
	if procDefaults(&req, image.RunConfig{StopSignal: "SIGINT"}); req.StopSignal != "SIGHUP" {
		t.Errorf("--stop-signal lost to the image's: %s", req.StopSignal)
	}
}

func mountOpts(s *specs.Spec, dest string) []string {
	for _, m := range s.Mounts {
		if m.Destination == dest {
			return m.Options
		}
	}
	return nil
}
