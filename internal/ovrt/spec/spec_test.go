package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
)

// capMask renders a capability list as the kernel's CapEff bit mask.
func capMask(t *testing.T, caps []string) uint64 {
	t.Helper()
	var m uint64
	for _, c := range caps {
		i := slices.Index(allCaps, c)
		if i < 0 {
			t.Fatalf("unknown capability %q in spec", c)
		}
		m |= 1 << i
	}
	return m
}

// allowed reports whether the seccomp profile lets syscall name through unconditionally.
func allowed(sc *specs.LinuxSeccomp, name string) bool {
	for _, s := range sc.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, name) {
			return true
		}
	}
	return false
}

func dests(ms []specs.Mount) []string {
	var d []string
	for _, m := range ms {
		d = append(d, m.Destination)
	}
	return d
}

func nsTypes(s *specs.Spec) []string {
	var out []string
	for _, n := range s.Linux.Namespaces {
		out = append(out, string(n.Type)+n.Path)
	}
	return out
}

func TestDefault(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\nstaff:x:50:\n",
	} {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := Options{ID: "0123456789abcdef", Args: []string{"/bin/sh"}}
	with := func(f func(o *Options)) Options { o := base; f(&o); return o }
	allMask := uint64(1)<<len(AllCapabilities()) - 1

	tests := []struct {
		name    string
		opts    Options
		check   func(t *testing.T, s *specs.Spec)
		wantErr string // substring of the error; the class is always ErrInvalidArgument
	}{
		{
			name: "docker defaults",
			opts: base,
			check: func(t *testing.T, s *specs.Spec) {
				c := s.Process.Capabilities
				if m := capMask(t, c.Effective); m != 0xa80425fb {
					t.Errorf("CapEff = %#x, want 0xa80425fb", m)
				}
				if !slices.Equal(c.Bounding, c.Effective) || !slices.Equal(c.Permitted, c.Effective) {
					t.Errorf("bounding %v / permitted %v differ from effective %v", c.Bounding, c.Permitted, c.Effective)
				}
				if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
					t.Errorf("inheritable %v, ambient %v; want both empty", c.Inheritable, c.Ambient)
				}
				if !s.Process.NoNewPrivileges {
					t.Error("no_new_privs not set")
				}
				if s.Hostname != "0123456789ab" {
					t.Errorf("hostname = %q, want the id's first 12 characters", s.Hostname)
				}
				if d := cmp.Diff([]string{DefaultPath, "HOSTNAME=0123456789ab"}, s.Process.Env); d != "" {
					t.Errorf("env (-want +got):\n%s", d)
				}
				if s.Process.Cwd != "/" || s.Root.Path != "rootfs" || s.Root.Readonly || s.Process.Terminal {
					t.Errorf("cwd %q root %+v terminal %v; want /, rootfs rw, no terminal", s.Process.Cwd, *s.Root, s.Process.Terminal)
				}
				if d := cmp.Diff([]string{"pid", "ipc", "uts", "mount", "cgroup", "network"}, nsTypes(s)); d != "" {
					t.Errorf("namespaces (-want +got):\n%s", d)
				}
				if d := cmp.Diff([]string{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"}, dests(s.Mounts)); d != "" {
					t.Errorf("mounts (-want +got):\n%s", d)
				}
				for _, m := range s.Mounts {
					if (m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup") && !slices.Contains(m.Options, "ro") {
						t.Errorf("%s mounted %v, want ro", m.Destination, m.Options)
					}
				}
				if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
					t.Errorf("masked %v readonly %v; want Docker's", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
				}
				soft, hard := nofile()
				if hard > 524288 || (hard == 524288) != canRaiseNofile() || soft != min(1024, hard) {
					t.Errorf("nofile() = %d:%d; want Docker's 1024:524288, lowered only to the caller's hard limit", soft, hard)
				}
				if d := cmp.Diff([]specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: soft, Hard: hard}}, s.Process.Rlimits); d != "" {
					t.Errorf("rlimits (-want +got):\n%s", d)
				}
				if s.Linux.CgroupsPath != "/ov/0123456789abcdef" {
					t.Errorf("cgroupsPath = %q", s.Linux.CgroupsPath)
				}
				sc := s.Linux.Seccomp
				if sc == nil || sc.DefaultAction != specs.ActErrno {
					t.Fatalf("seccomp = %+v, want Docker's profile (default action errno)", sc)
				}
				for _, call := range []string{"read", "write", "execve", "chown"} {
					if !allowed(sc, call) {
						t.Errorf("seccomp denies %s", call)
					}
				}
				for _, call := range []string{"mount", "umount2", "kexec_load", "init_module", "bpf"} {
					if allowed(sc, call) {
						t.Errorf("seccomp allows %s without CAP_SYS_ADMIN", call)
					}
				}
				r := s.Linux.Resources
				if r.Memory != nil || r.CPU != nil || r.Pids != nil {
					t.Errorf("resources %+v: want no limits", r)
				}
				if len(r.Devices) == 0 || r.Devices[0].Allow || r.Devices[0].Access != "rwm" {
					t.Errorf("device rules %+v: want deny-all first", r.Devices)
				}
				if s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" {
					t.Errorf("sysctl %v: want Docker's unprivileged ports", s.Linux.Sysctl)
				}
			},
		},
		{
			name: "privileged",
			opts: with(func(o *Options) { o.Privileged = true }),
			check: func(t *testing.T, s *specs.Spec) {
				if m := capMask(t, s.Process.Capabilities.Effective); m != allMask {
					t.Errorf("CapEff = %#x, want every capability %#x", m, allMask)
				}
				if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
					t.Errorf("seccomp %v masked %v readonly %v; want none", s.Linux.Seccomp != nil, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
				}
				if d := cmp.Diff([]specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, s.Linux.Resources.Devices); d != "" {
					t.Errorf("devices (-want +got):\n%s", d)
				}
				if !slices.Contains(s.Mounts[3].Options, "rw") {
					t.Errorf("/sys %v, want rw", s.Mounts[3].Options)
				}
			},
		},
		{
			name: "cap-add SYS_ADMIN unlocks mount in seccomp",
			opts: with(func(o *Options) { o.CapAdd = []string{"sys_admin"}; o.CapDrop = []string{"CAP_MKNOD", "net_raw"} }),
			check: func(t *testing.T, s *specs.Spec) {
				c := s.Process.Capabilities.Effective
				if !slices.Contains(c, "CAP_SYS_ADMIN") || slices.Contains(c, "CAP_MKNOD") || slices.Contains(c, "CAP_NET_RAW") || len(c) != 13 {
					t.Errorf("caps = %v; want defaults - MKNOD - NET_RAW + SYS_ADMIN", c)
				}
				if !allowed(s.Linux.Seccomp, "mount") {
					t.Error("seccomp denies mount with CAP_SYS_ADMIN")
				}
			},
		},
		{
			name: "cap-drop ALL keeps only added",
			opts: with(func(o *Options) { o.CapDrop = []string{"all"}; o.CapAdd = []string{"NET_BIND_SERVICE"} }),
			check: func(t *testing.T, s *specs.Spec) {
				if d := cmp.Diff([]string{"CAP_NET_BIND_SERVICE"}, s.Process.Capabilities.Bounding); d != "" {
					t.Errorf("caps (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "cap-add ALL minus drops",
			opts: with(func(o *Options) { o.CapAdd = []string{"ALL"}; o.CapDrop = []string{"SYS_ADMIN"} }),
			check: func(t *testing.T, s *specs.Spec) {
				if m := capMask(t, s.Process.Capabilities.Bounding); m != allMask&^(1<<21) {
					t.Errorf("caps = %#x, want all but SYS_ADMIN", m)
				}
			},
		},
		{
			name:    "unknown capabilities named",
			opts:    with(func(o *Options) { o.CapAdd = []string{"NET_ADMN"}; o.CapDrop = []string{"CAP_FLY"} }),
			wantErr: `"NET_ADMN", "CAP_FLY"`,
		},
		{
			name: "host network, terminal, read-only, cwd, env",
			opts: with(func(o *Options) {
				o.NetNSPath, o.Terminal, o.ReadOnly, o.Cwd, o.Hostname = "host", true, true, "/tmp", "web"
				o.Env = []string{"PATH=/bin", "A=b"}
			}),
			check: func(t *testing.T, s *specs.Spec) {
				if d := cmp.Diff([]string{"pid", "ipc", "uts", "mount", "cgroup"}, nsTypes(s)); d != "" {
					t.Errorf("namespaces (-want +got):\n%s", d)
				}
				if d := cmp.Diff([]string{"PATH=/bin", "A=b", "HOSTNAME=web", "TERM=xterm"}, s.Process.Env); d != "" {
					t.Errorf("env (-want +got):\n%s", d)
				}
				if !s.Root.Readonly || !s.Process.Terminal || s.Process.Cwd != "/tmp" || s.Hostname != "web" || s.Linux.Sysctl != nil {
					t.Errorf("root %+v terminal %v cwd %q hostname %q sysctl %v", *s.Root, s.Process.Terminal, s.Process.Cwd, s.Hostname, s.Linux.Sysctl)
				}
			},
		},
		{
			name: "joins a network namespace",
			opts: with(func(o *Options) { o.NetNSPath = "/run/netns/ovtest" }),
			check: func(t *testing.T, s *specs.Spec) {
				if got := nsTypes(s); got[len(got)-1] != "network/run/netns/ovtest" {
					t.Errorf("namespaces %v; want network joined at /run/netns/ovtest", got)
				}
			},
		},
		{
			name: "limits",
			opts: with(func(o *Options) { o.Memory, o.CPUs, o.PidsLimit, o.CgroupsPath = 64<<20, 1.5, 100, "/custom/c" }),
			check: func(t *testing.T, s *specs.Spec) {
				r := s.Linux.Resources
				if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 128<<20 {
					t.Errorf("memory %d swap %d; want 64MiB and twice that, as Docker", *r.Memory.Limit, *r.Memory.Swap)
				}
				if *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 {
					t.Errorf("cpu quota %d period %d; want 150000/100000", *r.CPU.Quota, *r.CPU.Period)
				}
				if *r.Pids.Limit != 100 || s.Linux.CgroupsPath != "/custom/c" {
					t.Errorf("pids %d cgroups path %q", *r.Pids.Limit, s.Linux.CgroupsPath)
				}
			},
		},
		{
			name: "unlimited swap",
			opts: with(func(o *Options) { o.Memory, o.MemorySwap = 64<<20, -1 }),
			check: func(t *testing.T, s *specs.Spec) {
				if *s.Linux.Resources.Memory.Swap != -1 {
					t.Errorf("swap = %d, want -1", *s.Linux.Resources.Memory.Swap)
				}
			},
		},
		{
			name: "mounts replace and add",
			opts: with(func(o *Options) {
				o.Mounts = []specs.Mount{
					{Destination: "/dev/shm/", Type: "tmpfs", Source: "shm", Options: []string{"size=1g"}},
					{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro"}},
				}
			}),
			check: func(t *testing.T, s *specs.Spec) {
				if d := cmp.Diff([]string{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm/", "/data"}, dests(s.Mounts)); d != "" {
					t.Errorf("mounts (-want +got):\n%s", d)
				}
			},
		},
		{
			name:  "numeric user",
			opts:  with(func(o *Options) { o.User = "1000:50" }),
			check: wantUser(1000, 50),
		},
		{
			name:  "user name from the rootfs",
			opts:  with(func(o *Options) { o.User, o.Rootfs = "app", rootfs }),
			check: wantUser(1000, 1001),
		},
		{
			name:  "user and group names",
			opts:  with(func(o *Options) { o.User, o.Rootfs = "nobody:staff", rootfs }),
			check: wantUser(65534, 50),
		},
		{name: "user name without rootfs", opts: with(func(o *Options) { o.User = "app" }), wantErr: "numeric uid"},
		{name: "unknown user", opts: with(func(o *Options) { o.User, o.Rootfs = "ghost", rootfs }), wantErr: `user "ghost"`},
		{name: "no id", opts: with(func(o *Options) { o.ID = "" }), wantErr: "id"},
		{name: "id with slash", opts: with(func(o *Options) { o.ID = "a/b" }), wantErr: "id"},
		{name: "no args", opts: with(func(o *Options) { o.Args = nil }), wantErr: "args"},
		{name: "relative cwd", opts: with(func(o *Options) { o.Cwd = "tmp" }), wantErr: "cwd"},
		{name: "bad env", opts: with(func(o *Options) { o.Env = []string{"NOVALUE"} }), wantErr: `env "NOVALUE"`},
		{name: "tiny memory", opts: with(func(o *Options) { o.Memory = 1000 }), wantErr: "6MiB"},
		{name: "swap below memory", opts: with(func(o *Options) { o.Memory, o.MemorySwap = 64<<20, 32<<20 }), wantErr: "memory-swap"},
		{name: "negative cpus", opts: with(func(o *Options) { o.CPUs = -1 }), wantErr: "cpus"},
		{name: "relative mount", opts: with(func(o *Options) { o.Mounts = []specs.Mount{{Destination: "data"}} }), wantErr: "mount destination"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Default(tt.opts)
			if tt.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want invalid argument mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func wantUser(uid, gid uint32) func(t *testing.T, s *specs.Spec) {
	return func(t *testing.T, s *specs.Spec) {
		if s.Process.User.UID != uid || s.Process.User.GID != gid {
			t.Errorf("user = %+v, want %d:%d", s.Process.User, uid, gid)
		}
	}
}

// TestDefaultDoesNotAlias checks that two specs share no slices: callers edit the spec they get.
func TestDefaultDoesNotAlias(t *testing.T) {
	a, err := Default(Options{ID: "a", Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	a.Process.Capabilities.Bounding[0] = "CAP_SYS_ADMIN"
	a.Linux.MaskedPaths[0] = "/nothing"
	b, _ := Default(Options{ID: "b", Args: []string{"true"}})
	if b.Process.Capabilities.Bounding[0] != "CAP_CHOWN" || b.Linux.MaskedPaths[0] != "/proc/asound" || DefaultCapabilities[0] != "CAP_CHOWN" {
		t.Errorf("editing one spec changed the defaults: %v %v", b.Process.Capabilities.Bounding, b.Linux.MaskedPaths)
	}
}

// canRaiseNofile reports whether this process's hard RLIMIT_NOFILE is at least Docker's 524288.
func canRaiseNofile() bool {
	var r unix.Rlimit
	return unix.Getrlimit(unix.RLIMIT_NOFILE, &r) == nil && r.Max >= 524288
}
