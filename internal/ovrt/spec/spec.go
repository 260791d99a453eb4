package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ovrt/rootdir"
)

// Options are what a Docker-like `run` decides about a container. The zero value of every field
// but ID and Args means Docker's default.
type Options struct {
	ID   string   // container id; required
	Args []string // command and arguments; required
	Env  []string // KEY=value; PATH, HOSTNAME (and TERM with Terminal) are added when missing
	Cwd  string   // working directory; default "/"
	// Hostname of the UTS namespace; default the first 12 characters of ID, as Docker.
	Hostname string
	Terminal bool // allocate a pseudo-terminal (-t)
	// NetNSPath: "" gives the container a new network namespace (with only lo until a network
	// driver adds interfaces); "host" shares the host's; anything else is the path of an existing
	// namespace to join (/run/netns/NAME, /proc/PID/ns/net).
	NetNSPath string
	ReadOnly  bool // read-only root file system (--read-only)
	// Privileged grants every capability, no seccomp filter, no masked or read-only paths, a
	// writable /sys and access to every device (--privileged).
	Privileged bool
	// CapAdd and CapDrop adjust the capabilities (--cap-add, --cap-drop): "NET_ADMIN",
	// "CAP_NET_ADMIN" or "ALL".
	CapAdd, CapDrop []string
	// User is "uid", "uid:gid", "name" or "name:group"; names are looked up in Rootfs's
	// /etc/passwd and /etc/group. Default root.
	User string
	// Rootfs is the root file system: written to root.path (relative to the bundle or absolute);
	// default "rootfs".
	Rootfs string
	// Memory limit in bytes (--memory); 0 means none.
	Memory int64
	// MemorySwap is memory plus swap in bytes (--memory-swap): 0 means twice Memory, as Docker;
	// -1 unlimited swap.
	MemorySwap int64
	CPUs       float64 // --cpus: CPU time in CPUs (1.5 = one and a half); 0 means no limit
	PidsLimit  int64   // --pids-limit; 0 or less means no limit
	// Mounts are added after the defaults; one with the destination of a default replaces it.
	Mounts []specs.Mount
	// CgroupsPath is linux.cgroupsPath; default "/ov/<ID>".
	CgroupsPath string
	// GroupAdd are more supplementary groups (--group-add): names from Rootfs's /etc/group or GIDs.
	GroupAdd []string
}

// MaskedPaths are the paths Docker hides from a container (an empty read-only tmpfs or /dev/null
// is mounted over them).
var MaskedPaths = []string{
	"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
}

// ReadonlyPaths are the paths Docker makes read-only in a container.
var ReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// DefaultPath is the PATH a container gets when its environment names none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Default builds the OCI spec Docker would build for o. Errors are errdefs.ErrInvalidArgument and
// name the offending option.
func Default(o Options) (*specs.Spec, error) {
	if err := validate(o); err != nil {
		return nil, err
	}
	hostname := o.Hostname
	if hostname == "" {
		hostname = o.ID
		if len(hostname) > 12 {
			hostname = hostname[:12]
		}
	}
	user, err := resolveUser(o.User, o.Rootfs)
	if err != nil {
		return nil, err
	}
	if user.AdditionalGids, err = additionalGids(o, user); err != nil {
		return nil, err
	}
	caps := DefaultCapabilities
	if o.Privileged {
		caps = AllCapabilities()
	}
	if caps, err = capabilities(caps, o.CapAdd, o.CapDrop); err != nil {
		return nil, fmt.Errorf("container %s: %w", o.ID, err)
	}
	cwd := o.Cwd
	if cwd == "" {
		cwd = "/"
	}
	root := o.Rootfs
	if root == "" {
		root = "rootfs"
	}
	cgPath := o.CgroupsPath
	if cgPath == "" {
		cgPath = "/ov/" + o.ID
	}
	nofileSoft, nofileHard := nofile()
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: o.Terminal,
			User:     user,
			Args:     slices.Clone(o.Args),
			Env:      env(o, hostname),
			Cwd:      cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: slices.Clone(caps),
				Permitted: slices.Clone(caps),
				// Inheritable and ambient stay empty, as Docker 25+ sets them.
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: nofileSoft, Hard: nofileHard}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: root, Readonly: o.ReadOnly},
		Hostname: hostname,
		Mounts:   mounts(o),
		Linux: &specs.Linux{
			CgroupsPath: cgPath,
			Resources:   resources(o),
			Namespaces:  namespaces(o.NetNSPath),
		},
	}
	if o.NetNSPath != "host" {
		// Docker's defaults for a container with its own network stack: any user may ping and
		// bind low ports (they are the container's own).
		s.Linux.Sysctl = map[string]string{
			"net.ipv4.ip_unprivileged_port_start": "0",
			"net.ipv4.ping_group_range":           "0 2147483647",
		}
	}
	if !o.Privileged {
		s.Linux.MaskedPaths = slices.Clone(MaskedPaths)
		s.Linux.ReadonlyPaths = slices.Clone(ReadonlyPaths)
		if s.Linux.Seccomp, err = seccompProfile(s); err != nil {
			return nil, fmt.Errorf("container %s: seccomp profile: %w", o.ID, err)
		}
	}
	return s, nil
}

func validate(o Options) error {
	var bad []string
	if o.ID == "" || strings.ContainsAny(o.ID, "/ \t\n") || o.ID == "." || o.ID == ".." {
		bad = append(bad, fmt.Sprintf("id %q: must be non-empty, without slashes or spaces", o.ID))
	}
	if len(o.Args) == 0 || o.Args[0] == "" {
		bad = append(bad, "args: a command to run is required")
	}
	if o.Cwd != "" && !strings.HasPrefix(o.Cwd, "/") {
		bad = append(bad, fmt.Sprintf("cwd %q: must be an absolute path", o.Cwd))
	}
	for _, e := range o.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			bad = append(bad, fmt.Sprintf("env %q: must be KEY=value", e))
		}
	}
	if o.Memory < 0 {
		bad = append(bad, fmt.Sprintf("memory %d: must be positive (or 0 for no limit)", o.Memory))
	}
	if o.Memory > 0 && o.Memory < 6<<20 {
		bad = append(bad, fmt.Sprintf("memory %d: the minimum is 6MiB, as Docker's", o.Memory))
	}
	if o.MemorySwap > 0 && (o.Memory == 0 || o.MemorySwap < o.Memory) {
		bad = append(bad, fmt.Sprintf("memory-swap %d: must be at least memory (%d), which must be set", o.MemorySwap, o.Memory))
	}
	if o.CPUs < 0 || (o.CPUs > 0 && o.CPUs < 0.01) {
		bad = append(bad, fmt.Sprintf("cpus %v: must be at least 0.01 (or 0 for no limit)", o.CPUs))
	}
	if o.CgroupsPath != "" && !strings.HasPrefix(o.CgroupsPath, "/") {
		bad = append(bad, fmt.Sprintf("cgroups path %q: must be absolute", o.CgroupsPath))
	}
	for _, m := range o.Mounts {
		if !strings.HasPrefix(m.Destination, "/") {
			bad = append(bad, fmt.Sprintf("mount destination %q: must be an absolute path", m.Destination))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("container %q: %s: %w", o.ID, strings.Join(bad, "; "), errdefs.ErrInvalidArgument)
	}
	return nil
}

func env(o Options, hostname string) []string {
	out := slices.Clone(o.Env)
	has := func(key string) bool {
		return slices.ContainsFunc(out, func(e string) bool { return strings.HasPrefix(e, key+"=") })
	}
	if !has("PATH") {
		out = append([]string{DefaultPath}, out...)
	}
	if !has("HOSTNAME") {
		out = append(out, "HOSTNAME="+hostname)
	}
	if o.Terminal && !has("TERM") {
		out = append(out, "TERM=xterm")
	}
	return out
}

func namespaces(netns string) []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
	}
	switch netns {
	case "host":
	case "":
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	default:
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netns})
	}
	return ns
}

func mounts(o Options) []specs.Mount {
	sysOpt, cgOpt := "ro", "ro"
	if o.Privileged {
		sysOpt, cgOpt = "rw", "rw"
	}
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", sysOpt}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", cgOpt}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	}
	for _, m := range o.Mounts {
		i := slices.IndexFunc(ms, func(d specs.Mount) bool { return filepath.Clean(d.Destination) == filepath.Clean(m.Destination) })
		if i >= 0 {
			ms[i] = m
		} else {
			ms = append(ms, m)
		}
	}
	return ms
}

func i64(v int64) *int64 { return &v }

// defaultDevices are the device cgroup rules of a container: Docker's (deny everything, allow
// the standard character devices) with runc's implicit additions (mknod of any device, the
// console, /dev/pts/*), so that the spec alone says what a container may open.
func defaultDevices() []specs.LinuxDeviceCgroup {
	allow := func(major, minor int64) specs.LinuxDeviceCgroup {
		d := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(major), Access: "rwm"}
		if minor >= 0 {
			d.Minor = i64(minor)
		}
		return d
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Access: "m"},
		{Allow: true, Type: "b", Access: "m"},
		allow(1, 3),    // null
		allow(1, 5),    // zero
		allow(1, 7),    // full
		allow(1, 8),    // random
		allow(1, 9),    // urandom
		allow(5, 0),    // tty
		allow(5, 1),    // console
		allow(5, 2),    // ptmx
		allow(136, -1), // pts/*
	}
}

func resources(o Options) *specs.LinuxResources {
	r := &specs.LinuxResources{Devices: defaultDevices()}
	if o.Privileged {
		r.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	if o.Memory > 0 {
		swap := o.MemorySwap
		if swap == 0 {
			swap = 2 * o.Memory
		}
		r.Memory = &specs.LinuxMemory{Limit: i64(o.Memory), Swap: i64(swap)}
	}
	if o.CPUs > 0 {
		period := uint64(100000)
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: i64(int64(o.CPUs*float64(period) + 0.5))}
	}
	if o.PidsLimit > 0 {
		r.Pids = &specs.LinuxPids{Limit: i64(o.PidsLimit)}
	}
	return r
}

// resolveUser turns "uid[:gid]" or "name[:group]" into a specs.User; names are looked up in the
// rootfs's /etc/passwd and /etc/group.
func resolveUser(u, rootfs string) (specs.User, error) {
	if u == "" {
		return specs.User{}, nil
	}
	name, group, hasGroup := strings.Cut(u, ":")
	var out specs.User
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		out.UID, out.GID = uint32(n), uint32(n)
		if id, ok, _ := lookup(rootfs, "etc/passwd", name, 2); ok {
			out.GID = id.gid
		}
	} else {
		if rootfs == "" {
			return out, fmt.Errorf("user %q: a user name needs the rootfs to look it up in /etc/passwd; give a numeric uid[:gid] or the rootfs: %w", u, errdefs.ErrInvalidArgument)
		}
		id, ok, err := lookup(rootfs, "etc/passwd", name, 0)
		if err != nil {
			return out, fmt.Errorf("user %q: cannot look the name up in the image: %v; fix the image's /etc/passwd or give a numeric uid[:gid]: %w", name, err, errdefs.ErrInvalidArgument)
		}
		if !ok {
			return out, fmt.Errorf("user %q: no such user in %s: %w", name, filepath.Join(rootfs, "etc/passwd"), errdefs.ErrInvalidArgument)
		}
		out.UID, out.GID = id.uid, id.gid
	}
	if hasGroup {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			out.GID = uint32(n)
		} else {
			id, ok, err := lookup(rootfs, "etc/group", group, 0)
			if err != nil {
				return out, fmt.Errorf("user %q: cannot look group %q up in the image: %v; fix the image's /etc/group or give a numeric gid: %w", u, group, err, errdefs.ErrInvalidArgument)
			}
			if !ok {
				return out, fmt.Errorf("user %q: no such group %q in %s: %w", u, group, filepath.Join(rootfs, "etc/group"), errdefs.ErrInvalidArgument)
			}
			out.GID = id.uid
		}
	}
	return out, nil
}

type ids struct{ uid, gid uint32 }

// MaxUserFile is the most read of an image's /etc/passwd or /etc/group.
const MaxUserFile = 1 << 20

// lookup finds the passwd or group line whose field key (0 name, 2 id) is value, returning its
// third and fourth fields (uid and gid for passwd; gid for group). The file is the image's: it is
// resolved inside rootfs (a symlink cannot lead to the host's files), and read only if it is a
// regular file of at most MaxUserFile bytes (a FIFO cannot hang the caller).
func lookup(rootfs, file, value string, key int) (ids, bool, error) {
	if rootfs == "" {
		return ids{}, false, fmt.Errorf("no rootfs to read %s from", file)
	}
	root, err := rootdir.Open(rootfs)
	if err != nil {
		return ids{}, false, err
	}
	defer root.Close()
	b, err := root.ReadFile(file, MaxUserFile)
	if errors.Is(err, os.ErrNotExist) {
		return ids{}, false, nil
	}
	if err != nil {
		return ids{}, false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Split(line, ":")
		if len(fields) < 3 || fields[key] != value {
			continue
		}
		uid, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil {
			continue
		}
		id := ids{uid: uint32(uid)}
		if len(fields) > 3 {
			if gid, err := strconv.ParseUint(fields[3], 10, 32); err == nil {
				id.gid = uint32(gid)
			}
		}
		return id, true, nil
	}
	return ids{}, false, nil
}
