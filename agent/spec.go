package agent

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/runtime/image"
)

// defaultCaps is Docker's default capability set.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
	"CAP_KILL", "CAP_AUDIT_WRITE",
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// specInput is what the agent knows when it builds a container's OCI spec.
type specInput struct {
	ID       string
	Create   api.ContainerCreate
	Image    image.RunConfig
	Rootfs   string
	Netns    string // "" with HostNet: the host's; "" otherwise: a new, empty namespace
	HostNet  bool
	Hostname string
	Bundle   string // where hostname/hosts/resolv.conf files are written
	IP       string
}

// command returns entrypoint + cmd as docker combines them.
func command(c api.ContainerCreate, img image.RunConfig) []string {
	ep := img.Entrypoint
	if c.Entrypoint != nil {
		ep = c.Entrypoint
	}
	cmd := img.Cmd
	if len(c.Cmd) > 0 || c.Entrypoint != nil {
		cmd = c.Cmd
	}
	return append(append([]string(nil), ep...), cmd...)
}

// mergeEnv returns base with over's variables replacing or added.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	for _, e := range over {
		k, _, _ := strings.Cut(e, "=")
		replaced := false
		for i, o := range out {
			if ok, _, _ := strings.Cut(o, "="); ok == k {
				out[i], replaced = e, true
				break
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}

// resolveUser turns "name|uid[:group|gid]" into ids using the rootfs's /etc/passwd and /etc/group.
func resolveUser(rootfs, user string) (specs.User, error) {
	if user == "" {
		return specs.User{}, nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	var out specs.User
	if id, err := strconv.ParseUint(u, 10, 32); err == nil {
		out.UID, out.GID = uint32(id), uint32(id)
		if f := lookupColonFile(filepath.Join(rootfs, "etc/passwd"), func(fields []string) bool { return fields[2] == u }); f != nil {
			if gid, err := strconv.ParseUint(f[3], 10, 32); err == nil {
				out.GID = uint32(gid)
			}
		}
	} else {
		f := lookupColonFile(filepath.Join(rootfs, "etc/passwd"), func(fields []string) bool { return fields[0] == u })
		if f == nil {
			return out, fmt.Errorf("user %q: no such user in the image's /etc/passwd; use a numeric uid: %w", u, errdefs.ErrInvalidArgument)
		}
		uid, _ := strconv.ParseUint(f[2], 10, 32)
		gid, _ := strconv.ParseUint(f[3], 10, 32)
		out.UID, out.GID = uint32(uid), uint32(gid)
	}
	if hasGroup {
		if id, err := strconv.ParseUint(g, 10, 32); err == nil {
			out.GID = uint32(id)
		} else {
			f := lookupColonFile(filepath.Join(rootfs, "etc/group"), func(fields []string) bool { return fields[0] == g })
			if f == nil {
				return out, fmt.Errorf("group %q: no such group in the image's /etc/group; use a numeric gid: %w", g, errdefs.ErrInvalidArgument)
			}
			gid, _ := strconv.ParseUint(f[2], 10, 32)
			out.GID = uint32(gid)
		}
	}
	return out, nil
}

func lookupColonFile(path string, match func([]string) bool) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 4 && match(fields) {
			return fields
		}
	}
	return nil
}

// buildSpec makes the container's OCI spec (Docker's defaults, then the request's changes).
func buildSpec(in specInput) (*specs.Spec, error) {
	c := in.Create
	args := command(c, in.Image)
	if len(args) == 0 {
		return nil, fmt.Errorf("container: image %q names no command and none was given: %w", c.Image, errdefs.ErrInvalidArgument)
	}
	user, err := resolveUser(in.Rootfs, firstNonEmpty(c.User, in.Image.User))
	if err != nil {
		return nil, err
	}
	env := mergeEnv([]string{defaultPath, "HOSTNAME=" + in.Hostname}, in.Image.Env)
	if c.Tty {
		env = mergeEnv(env, []string{"TERM=xterm"})
	}
	env = mergeEnv(env, c.Env)
	caps := capSet(c)
	s := &specs.Spec{
		Version:  specs.Version,
		Hostname: in.Hostname,
		Root:     &specs.Root{Path: in.Rootfs, Readonly: c.ReadOnly},
		Process: &specs.Process{
			Terminal:        c.Tty,
			User:            user,
			Args:            args,
			Env:             env,
			Cwd:             firstNonEmpty(c.WorkingDir, in.Image.WorkingDir, "/"),
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			NoNewPrivileges: !c.Privileged,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
		},
	}
	if !in.HostNet {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: in.Netns})
	}
	if !c.Privileged {
		s.Linux.MaskedPaths = []string{"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
			"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
		s.Linux.ReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
		for _, d := range []struct {
			path         string
			major, minor int64
		}{{"/dev/null", 1, 3}, {"/dev/zero", 1, 5}, {"/dev/full", 1, 7}, {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0}, {"/dev/ptmx", 5, 2}} {
			mj, mn := d.major, d.minor
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &mj, Minor: &mn, Access: "rwm"})
		}
		pts := int64(136)
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &pts, Access: "rwm"})
	} else {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	if c.Memory > 0 {
		m := c.Memory
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if c.NanoCPUs > 0 {
		period := uint64(100000)
		quota := c.NanoCPUs * int64(period) / 1e9
		s.Linux.Resources.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if c.PidsLimit > 0 {
		pl := c.PidsLimit
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pl}
	}
	for _, m := range c.Mounts {
		opts := []string{"rbind", "rprivate"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: opts})
	}
	if err := writeEtcFiles(s, in); err != nil {
		return nil, err
	}
	return s, nil
}

// capSet applies --privileged, --cap-add and --cap-drop to Docker's default set.
func capSet(c api.ContainerCreate) []string {
	norm := func(s string) string {
		s = strings.ToUpper(s)
		if !strings.HasPrefix(s, "CAP_") {
			s = "CAP_" + s
		}
		return s
	}
	set := map[string]bool{}
	if c.Privileged {
		for _, n := range allCaps {
			set[n] = true
		}
	} else {
		for _, n := range defaultCaps {
			set[n] = true
		}
	}
	for _, a := range c.CapAdd {
		if strings.EqualFold(a, "ALL") {
			for _, n := range allCaps {
				set[n] = true
			}
			continue
		}
		set[norm(a)] = true
	}
	for _, d := range c.CapDrop {
		if strings.EqualFold(d, "ALL") {
			set = map[string]bool{}
			continue
		}
		delete(set, norm(d))
	}
	var out []string
	for _, n := range allCaps {
		if set[n] {
			out = append(out, n)
		}
	}
	return out
}

// allCaps names every capability up to CAP_CHECKPOINT_RESTORE, in number order.
var allCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE"}

// writeEtcFiles writes /etc/hostname, /etc/hosts and /etc/resolv.conf for the container into its
// bundle and bind-mounts them (as Docker does), unless it shares the host's network.
func writeEtcFiles(s *specs.Spec, in specInput) error {
	if in.HostNet {
		return nil
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if in.IP != "" {
		hosts += in.IP + "\t" + in.Hostname + "\n"
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = nil
	}
	files := map[string][]byte{"hostname": []byte(in.Hostname + "\n"), "hosts": []byte(hosts), "resolv.conf": resolv}
	for _, name := range []string{"hostname", "hosts", "resolv.conf"} {
		p := filepath.Join(in.Bundle, name)
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return err
		}
		opts := []string{"rbind", "rprivate"}
		if in.Create.ReadOnly {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/" + name, Type: "bind", Source: p, Options: opts})
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
