package ovrt

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountFlags are the mount(8) options that are flags; the rest go to the filesystem as data.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"dirsync": {false, unix.MS_DIRSYNC}, "remount": {false, unix.MS_REMOUNT},
	"mand": {false, unix.MS_MANDLOCK}, "nomand": {true, unix.MS_MANDLOCK},
	"atime": {true, unix.MS_NOATIME}, "noatime": {false, unix.MS_NOATIME},
	"diratime": {true, unix.MS_NODIRATIME}, "nodiratime": {false, unix.MS_NODIRATIME},
	"relatime": {false, unix.MS_RELATIME}, "norelatime": {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
}

var propagationFlags = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parseMountOptions splits options into flags, propagation flags and filesystem data.
func parseMountOptions(opts []string) (flags, prop uintptr, data string) {
	var d []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[o]; ok {
			prop |= p
			continue
		}
		d = append(d, o)
	}
	return flags, prop, strings.Join(d, ",")
}

// setupRootfs runs in the container's new mount namespace, before pivot_root: it cuts propagation
// to the host, mounts the bundle's mounts below the rootfs, completes /dev and pivots.
func setupRootfs(s *specs.Spec, rootfs, cgPath string, newNS map[string]bool) error {
	prop := uintptr(unix.MS_SLAVE | unix.MS_REC)
	if p := s.Linux.RootfsPropagation; p != "" {
		f, ok := propagationFlags[p]
		if !ok {
			return fmt.Errorf("linux.rootfsPropagation %q is not a propagation type", p)
		}
		prop = f
	}
	// First of all: nothing mounted below may propagate back to the host.
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("make / %s: %w", s.Linux.RootfsPropagation, err)
	}
	// pivot_root needs the new root to be a mount point whose parent is not shared.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", rootfs, err)
	}
	have := map[string]bool{}
	for i, m := range s.Mounts {
		if err := mountOne(rootfs, m, cgPath, newNS); err != nil {
			return fmt.Errorf("mounts[%d] (%s on %s): %w", i, m.Type, m.Destination, err)
		}
		have[filepath.Clean(m.Destination)] = true
	}
	// The minimal /dev every program expects, unless the bundle mounts its own.
	defaults := []specs.Mount{
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	}
	devIsOurs := !have["/dev"]
	for _, m := range defaults {
		if have[m.Destination] {
			continue
		}
		if err := mountOne(rootfs, m, cgPath, newNS); err != nil {
			return fmt.Errorf("default mount %s: %w", m.Destination, err)
		}
	}
	if devIsOurs || isTmpfs(filepath.Join(rootfs, "dev")) {
		if err := makeDevices(rootfs, s.Linux.Devices); err != nil {
			return err
		}
	}
	return pivotRoot(rootfs)
}

func isTmpfs(p string) bool {
	var st unix.Statfs_t
	return unix.Statfs(p, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

func mountOne(rootfs string, m specs.Mount, cgPath string, newNS map[string]bool) error {
	dest, err := securejoin.SecureJoin(rootfs, m.Destination)
	if err != nil {
		return err
	}
	flags, prop, data := parseMountOptions(m.Options)
	typ := m.Type
	if typ == "bind" || flags&unix.MS_BIND != 0 {
		return bindMount(m.Source, dest, flags, prop)
	}
	if typ == "cgroup" {
		return mountCgroup(dest, flags, cgPath, newNS[string(specs.CgroupNamespace)])
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	err = unix.Mount(m.Source, dest, typ, flags, data)
	if err == unix.EPERM && typ == "sysfs" {
		// sysfs can only be mounted fresh with a network namespace of our own user namespace: fall
		// back to a read-only bind of the host's, as runc does.
		return bindMount("/sys", dest, unix.MS_BIND|unix.MS_REC|unix.MS_RDONLY|flags, 0)
	}
	if err != nil {
		return err
	}
	if prop != 0 {
		return unix.Mount("", dest, "", prop, "")
	}
	return nil
}

func bindMount(src, dest string, flags, prop uintptr) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("bind source: %w", err)
	}
	if fi.IsDir() {
		err = os.MkdirAll(dest, 0o755)
	} else {
		err = touch(dest)
	}
	if err != nil {
		return err
	}
	if flags&unix.MS_REC == 0 && flags&unix.MS_BIND == 0 {
		flags |= unix.MS_BIND | unix.MS_REC // type "bind" without bind/rbind option
	}
	if err := unix.Mount(src, dest, "", unix.MS_BIND|(flags&unix.MS_REC), ""); err != nil {
		return err
	}
	// Bind mounts take their flags only on a remount.
	if rest := flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rest != 0 {
		if err := remount(dest, rest); err != nil {
			return err
		}
	}
	if prop != 0 {
		return unix.Mount("", dest, "", prop, "")
	}
	return nil
}

// remount remounts a bind mount with extra flags, keeping the flags the kernel locks (nosuid, nodev,
// noexec... of the underlying mount).
func remount(p string, flags uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	for _, f := range []struct{ st, ms int64 }{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if st.Flags&f.st != 0 {
			flags |= uintptr(f.ms)
		}
	}
	return unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|flags, "")
}

func touch(p string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// mountCgroup mounts the cgroup filesystem at dest read-only as the host lays it out: cgroup2 on a
// unified host; on a v1 (or hybrid) host a tmpfs with one mount per hierarchy. In a cgroup namespace
// each mount shows the container's own cgroup as its root. Where a fresh v1 mount is not allowed (a
// user namespace), the container's own cgroup directories of the host are bound instead.
func mountCgroup(dest string, flags uintptr, cgPath string, cgroupNS bool) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return unix.Mount("cgroup2", dest, "cgroup2", flags, "")
	}
	if err := unix.Mount("tmpfs", dest, "tmpfs", flags&^unix.MS_RDONLY, "mode=755"); err != nil {
		return err
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue // the cgroup2 line of a hybrid host
		}
		name := strings.TrimPrefix(parts[1], "name=")
		sub := filepath.Join(dest, name)
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		err := unix.Mount("cgroup", sub, "cgroup", flags, parts[1])
		if errors.Is(err, unix.EPERM) {
			own := filepath.Join("/sys/fs/cgroup", name, cgPath)
			if err := bindMount(own, sub, unix.MS_BIND|flags, 0); err != nil {
				return fmt.Errorf("bind cgroup %s: %w", own, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("mount cgroup %s: %w", parts[1], err)
		}
		if !cgroupNS && parts[2] != "/" {
			// Without a cgroup namespace, show only the container's own cgroup.
			own := filepath.Join(sub, parts[2])
			if err := unix.Mount(own, sub, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind own cgroup %s: %w", own, err)
			}
		}
		// Controllers mounted together (cpu,cpuacct) get the usual symlinks.
		if strings.Contains(name, ",") {
			for _, c := range strings.Split(name, ",") {
				_ = os.Symlink(name, filepath.Join(dest, c))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if flags&unix.MS_RDONLY != 0 {
		return remount(dest, unix.MS_RDONLY)
	}
	return nil
}

// defaultDevices are the device nodes every container gets.
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// makeDevices creates the default devices and the spec's in the container's /dev: mknod, or, where
// that is not allowed (a user namespace), a bind mount of the host's node.
func makeDevices(rootfs string, extra []specs.LinuxDevice) error {
	oldMask := unix.Umask(0)
	defer unix.Umask(oldMask)
	for _, d := range append(append([]specs.LinuxDevice(nil), defaultDevices...), extra...) {
		dest, err := securejoin.SecureJoin(rootfs, d.Path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return err
		}
		mode := uint32(0o666)
		if d.FileMode != nil {
			mode = uint32(*d.FileMode) & 0o7777
		}
		switch d.Type {
		case "c", "u":
			mode |= unix.S_IFCHR
		case "b":
			mode |= unix.S_IFBLK
		case "p":
			mode |= unix.S_IFIFO
		default:
			return fmt.Errorf("linux.devices %s: unknown type %q", d.Path, d.Type)
		}
		err = unix.Mknod(dest, mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor))))
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if errors.Is(err, unix.EPERM) {
			err = bindMount(d.Path, dest, unix.MS_BIND, 0)
		}
		if err != nil {
			return fmt.Errorf("create device %s: %w", d.Path, err)
		}
		if d.UID != nil || d.GID != nil {
			uid, gid := -1, -1
			if d.UID != nil {
				uid = int(*d.UID)
			}
			if d.GID != nil {
				gid = int(*d.GID)
			}
			if err := unix.Lchown(dest, uid, gid); err != nil {
				return fmt.Errorf("chown device %s: %w", d.Path, err)
			}
		}
	}
	for link, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
	} {
		p := filepath.Join(rootfs, "dev", link)
		if _, err := os.Lstat(p); err == nil {
			if link != "ptmx" {
				continue
			}
			os.Remove(p)
		}
		if err := os.Symlink(target, p); err != nil {
			return fmt.Errorf("link /dev/%s: %w", link, err)
		}
	}
	return nil
}

// pivotRoot makes rootfs the root: pivot_root(".", ".") stacks the old root on the new one, which
// is then detached, so no path to the host's filesystem remains.
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", rootfs, err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return err
	}
	// Make the old root slave so that unmounting it does not propagate to the host.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// finishRootfs runs after pivot_root: sysctls, read-only and masked paths, read-only root.
func finishRootfs(s *specs.Spec) error {
	for k, v := range s.Linux.Sysctl {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("linux.sysctl %s=%s: %w", k, v, err)
		}
	}
	for _, p := range s.Linux.ReadonlyPaths {
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("linux.readonlyPaths %s: %w", p, err)
		}
		if err := remount(p, unix.MS_RDONLY); err != nil {
			return fmt.Errorf("linux.readonlyPaths %s: %w", p, err)
		}
	}
	for _, p := range s.Linux.MaskedPaths {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("linux.maskedPaths %s: %w", p, err)
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("linux.maskedPaths %s: %w", p, err)
		}
	}
	if s.Root.Readonly {
		if err := remount("/", unix.MS_RDONLY); err != nil {
			return fmt.Errorf("root.readonly: %w", err)
		}
	}
	return nil
}
