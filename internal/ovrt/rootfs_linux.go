package ovrt

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/ovrt/rootdir"
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

// recursiveAttrs are the OCI runtime spec's recursive mount options: mount_setattr(2) with
// AT_RECURSIVE applies them to the mount and every mount below it.
var recursiveAttrs = map[string]struct{ set, clr uint64 }{
	"rro": {unix.MOUNT_ATTR_RDONLY, 0}, "rrw": {0, unix.MOUNT_ATTR_RDONLY},
	"rnosuid": {unix.MOUNT_ATTR_NOSUID, 0}, "rsuid": {0, unix.MOUNT_ATTR_NOSUID},
	"rnodev": {unix.MOUNT_ATTR_NODEV, 0}, "rdev": {0, unix.MOUNT_ATTR_NODEV},
	"rnoexec": {unix.MOUNT_ATTR_NOEXEC, 0}, "rexec": {0, unix.MOUNT_ATTR_NOEXEC},
	"rnodiratime": {unix.MOUNT_ATTR_NODIRATIME, 0}, "rdiratime": {0, unix.MOUNT_ATTR_NODIRATIME},
	"rrelatime": {unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME}, "rnorelatime": {0, 0},
	"rnoatime": {unix.MOUNT_ATTR_NOATIME, unix.MOUNT_ATTR__ATIME}, "ratime": {0, 0},
	"rstrictatime": {unix.MOUNT_ATTR_STRICTATIME, unix.MOUNT_ATTR__ATIME}, "rnostrictatime": {0, 0},
}

// mountOptions are a mount's options sorted out.
type mountOptions struct {
	flags, prop uintptr
	rec         unix.MountAttr // recursive attributes ("rro", ...)
	data        string
}

// parseMountOptions splits options into flags, propagation flags, recursive attributes and
// filesystem data.
func parseMountOptions(opts []string) mountOptions {
	var o mountOptions
	var d []string
	for _, opt := range opts {
		if f, ok := mountFlags[opt]; ok {
			if f.clear {
				o.flags &^= f.flag
			} else {
				o.flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[opt]; ok {
			o.prop |= p
			continue
		}
		if a, ok := recursiveAttrs[opt]; ok {
			o.rec.Attr_set, o.rec.Attr_clr = o.rec.Attr_set&^a.clr|a.set, o.rec.Attr_clr&^a.set|a.clr
			continue
		}
		d = append(d, opt)
	}
	o.data = strings.Join(d, ",")
	return o
}

// setupRootfs runs in the container's new mount namespace, before pivot_root: it cuts propagation
// to the host, mounts the bundle's mounts below the rootfs, completes /dev and pivots. Every path of
// the container is resolved inside the rootfs by the kernel (rootdir), and every mount is made onto
// the file descriptor of its resolved destination, then checked.
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
	root, err := rootdir.Open(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	have := map[string]bool{}
	for i, m := range s.Mounts {
		if err := mountOne(root, m, cgPath, newNS); err != nil {
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
		if err := mountOne(root, m, cgPath, newNS); err != nil {
			return fmt.Errorf("default mount %s: %w", m.Destination, err)
		}
	}
	if devIsOurs || isTmpfs(root, "/dev") {
		if err := makeDevices(root, s.Linux.Devices); err != nil {
			return err
		}
	}
	return pivotRoot(rootfs)
}

func isTmpfs(root *rootdir.Dir, p string) bool {
	f, err := root.OpenPath(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var st unix.Statfs_t
	return unix.Fstatfs(int(f.Fd()), &st) == nil && st.Type == unix.TMPFS_MAGIC
}

// fdPath names what f is open on for a path-taking call such as mount(2): the kernel follows the
// magic link to the very file f holds, whatever happened to the path since it was opened.
func fdPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

func mountOne(root *rootdir.Dir, m specs.Mount, cgPath string, newNS map[string]bool) error {
	o := parseMountOptions(m.Options)
	if m.Type == "bind" || o.flags&unix.MS_BIND != 0 {
		return bindMount(root, m.Source, m.Destination, o)
	}
	dest, err := root.MkdirAll(m.Destination, 0o755)
	if err != nil {
		return err
	}
	defer dest.Close()
	if m.Type == "cgroup" {
		return mountCgroup(root, m.Destination, dest, o.flags, cgPath, newNS[string(specs.CgroupNamespace)])
	}
	mnt, err := mountAt(root, m.Destination, dest, func(target string) error {
		return unix.Mount(m.Source, target, m.Type, o.flags, o.data)
	})
	if err == unix.EPERM && m.Type == "sysfs" {
		// sysfs can only be mounted fresh with a network namespace of our own user namespace: fall
		// back to a read-only bind of the host's, as runc does.
		o.flags |= unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY
		return bindMount(root, "/sys", m.Destination, o)
	}
	if err != nil {
		return err
	}
	defer mnt.Close()
	return finishMount(mnt, o, false)
}

// mountAt mounts onto dest, the handle of the container path p, through its /proc/self/fd path, then
// checks that the new mount is what p resolves to now, inside the root, and returns a handle of the
// mount's root. A destination swapped (for a symlink, say) between the open and the mount cannot
// redirect the mount: it lands on what dest holds, and the check then fails the container.
func mountAt(root *rootdir.Dir, p string, dest *os.File, mount func(target string) error) (*os.File, error) {
	if err := mount(fdPath(dest)); err != nil {
		return nil, err
	}
	mnt, err := root.OpenPath(p)
	if err != nil {
		return nil, fmt.Errorf("reopen mount destination: %w", err)
	}
	before, err1 := mountID(dest)
	after, err2 := mountID(mnt)
	where, err3 := os.Readlink(fdPath(mnt))
	switch {
	case err1 != nil || err2 != nil || err3 != nil:
		err = fmt.Errorf("check mount destination: %w", errors.Join(err1, err2, err3))
	case before == after:
		err = fmt.Errorf("mount destination %s changed while it was being mounted (a symlink swapped in?): refusing to go on", p)
	case where != root.Path() && !strings.HasPrefix(where, root.Path()+"/"):
		err = fmt.Errorf("mount destination %s resolved to %s, outside the root %s: refusing to go on", p, where, root.Path())
	}
	if err != nil {
		mnt.Close()
		return nil, err
	}
	return mnt, nil
}

func mountID(f *os.File) (uint64, error) {
	var st unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		return 0, err
	}
	return st.Mnt_id, nil
}

// finishMount applies what a mount's options ask for after the mount itself: the flags of a bind
// mount (recursive for a recursive bind, so `-v SRC:DST:ro` makes every submount read-only too),
// the recursive attributes ("rro", ...), and the propagation.
func finishMount(mnt *os.File, o mountOptions, bind bool) error {
	if bind {
		recursive := o.flags&unix.MS_REC != 0 && !rootdir.Unprotected("rro")
		if err := setAttr(mnt, o.flags, recursive); err != nil {
			return err
		}
	}
	if o.rec.Attr_set|o.rec.Attr_clr != 0 {
		if err := unix.MountSetattr(int(mnt.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &o.rec); err != nil {
			return fmt.Errorf("set recursive mount attributes: %w", err)
		}
	}
	if o.prop != 0 {
		if err := unix.Mount("", fdPath(mnt), "", o.prop, ""); err != nil {
			return fmt.Errorf("set propagation: %w", err)
		}
	}
	return nil
}

// setAttr sets the mount flags among flags (ro, nosuid, nodev, noexec, atime options) on the mount
// mnt is the root of, and below it when recursive. It only sets: flags the kernel locks (those of an
// underlying mount in a user namespace) stay as they are.
func setAttr(mnt *os.File, flags uintptr, recursive bool) error {
	var a unix.MountAttr
	for _, f := range []struct {
		ms   uintptr
		attr uint64
	}{
		{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY}, {unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
		{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV}, {unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
		{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
	} {
		if flags&f.ms != 0 {
			a.Attr_set |= f.attr
		}
	}
	switch {
	case flags&unix.MS_NOATIME != 0:
		a.Attr_set, a.Attr_clr = a.Attr_set|unix.MOUNT_ATTR_NOATIME, unix.MOUNT_ATTR__ATIME
	case flags&unix.MS_STRICTATIME != 0:
		a.Attr_set, a.Attr_clr = a.Attr_set|unix.MOUNT_ATTR_STRICTATIME, unix.MOUNT_ATTR__ATIME
	case flags&unix.MS_RELATIME != 0:
		a.Attr_set, a.Attr_clr = a.Attr_set|unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME
	}
	if a.Attr_set|a.Attr_clr == 0 {
		return nil
	}
	at := unix.AT_EMPTY_PATH
	if recursive {
		at |= unix.AT_RECURSIVE
	}
	err := unix.MountSetattr(int(mnt.Fd()), "", uint(at), &a)
	if errors.Is(err, unix.EPERM) && a.Attr_clr != 0 {
		// A user namespace may not change the atime mode of a mount it does not own (the kernel
		// locks it): keep that one as it is.
		a.Attr_set &^= unix.MOUNT_ATTR__ATIME
		a.Attr_clr = 0
		err = unix.MountSetattr(int(mnt.Fd()), "", uint(at), &a)
	}
	if errors.Is(err, unix.ENOSYS) && !recursive {
		return remount(fdPath(mnt), flags&^(unix.MS_BIND|unix.MS_REC|unix.MS_REMOUNT))
	}
	if errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("set mount flags recursively: the kernel has no mount_setattr (Linux 5.12 or later is needed)")
	}
	if err != nil {
		return fmt.Errorf("set mount flags: %w", err)
	}
	return nil
}

// bindMount binds the host path src (the bundle's, trusted; opened once, so stat and mount see the
// same file) onto the container path p, made a directory or a file like src.
func bindMount(root *rootdir.Dir, src, p string, o mountOptions) error {
	sf, err := os.OpenFile(src, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bind source: %w", err)
	}
	defer sf.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(sf.Fd()), &st); err != nil {
		return fmt.Errorf("bind source: %w", err)
	}
	var dest *os.File
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		dest, err = root.MkdirAll(p, 0o755)
	} else {
		dest, err = root.MkFile(p, 0o644)
	}
	if err != nil {
		return err
	}
	defer dest.Close()
	if o.flags&unix.MS_REC == 0 && o.flags&unix.MS_BIND == 0 {
		o.flags |= unix.MS_BIND | unix.MS_REC // type "bind" without bind/rbind option
	}
	mnt, err := mountAt(root, p, dest, func(target string) error {
		return unix.Mount(fdPath(sf), target, "", unix.MS_BIND|(o.flags&unix.MS_REC), "")
	})
	if err != nil {
		return err
	}
	defer mnt.Close()
	return finishMount(mnt, o, true)
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

// mountCgroup mounts the cgroup filesystem on dest (the handle of the container path p) read-only
// as the host lays it out: cgroup2 on a unified host; on a v1 (or hybrid) host a tmpfs with one
// mount per hierarchy. In a cgroup namespace each mount shows the container's own cgroup as its
// root. Where a fresh v1 mount is not allowed (a user namespace), the container's own cgroup
// directories of the host are bound instead. Everything below dest is done through descriptors of
// the fresh tmpfs, which nothing else can see yet.
func mountCgroup(root *rootdir.Dir, p string, dest *os.File, flags uintptr, cgPath string, cgroupNS bool) error {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		mnt, err := mountAt(root, p, dest, func(t string) error { return unix.Mount("cgroup2", t, "cgroup2", flags, "") })
		if err == nil {
			mnt.Close()
		}
		return err
	}
	mnt, err := mountAt(root, p, dest, func(t string) error { return unix.Mount("tmpfs", t, "tmpfs", flags&^unix.MS_RDONLY, "mode=755") })
	if err != nil {
		return err
	}
	defer mnt.Close()
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
		if err := mountHierarchy(mnt, parts[1], parts[2], flags, cgPath, cgroupNS); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if flags&unix.MS_RDONLY != 0 {
		return setAttr(mnt, unix.MS_RDONLY, true)
	}
	return nil
}

// mountHierarchy mounts the v1 hierarchy named opts ("memory", "cpu,cpuacct", "name=systemd") in the
// cgroup tmpfs tmp; own is the init's cgroup in it.
func mountHierarchy(tmp *os.File, opts, own string, flags uintptr, cgPath string, cgroupNS bool) error {
	name := strings.TrimPrefix(opts, "name=")
	if err := unix.Mkdirat(int(tmp.Fd()), name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mkdir cgroup %s: %w", name, err)
	}
	sub, err := openIn(tmp, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("open cgroup %s: %w", name, err)
	}
	defer sub.Close()
	err = unix.Mount("cgroup", fdPath(sub), "cgroup", flags, opts)
	if errors.Is(err, unix.EPERM) {
		host := filepath.Join("/sys/fs/cgroup", name, cgPath)
		if err := unix.Mount(host, fdPath(sub), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind cgroup %s: %w", host, err)
		}
		mnt, err := openIn(tmp, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", name, err)
		}
		defer mnt.Close()
		return setAttr(mnt, flags, false)
	}
	if err != nil {
		return fmt.Errorf("mount cgroup %s: %w", opts, err)
	}
	if !cgroupNS && own != "/" {
		// Without a cgroup namespace, show only the container's own cgroup.
		mnt, err := openIn(tmp, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", name, err)
		}
		defer mnt.Close()
		ownDir, err := openIn(mnt, strings.TrimPrefix(own, "/"), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("open own cgroup %s: %w", own, err)
		}
		defer ownDir.Close()
		if err := unix.Mount(fdPath(ownDir), fdPath(mnt), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind own cgroup %s: %w", own, err)
		}
	}
	// Controllers mounted together (cpu,cpuacct) get the usual symlinks.
	if strings.Contains(name, ",") {
		for _, c := range strings.Split(name, ",") {
			_ = unix.Symlinkat(name, int(tmp.Fd()), c)
		}
	}
	return nil
}

func openIn(dir *os.File, name string, flags int) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// makeDevices creates the standard devices (runc's: null, zero, full, random, urandom, tty) and the
// spec's linux.devices in the container's /dev, resolved inside the rootfs (an image whose /dev is
// a symlink gets them where the symlink leads inside it). A spec device at the path of a standard
// one replaces it, as in runc.
func makeDevices(root *rootdir.Dir, extra []specs.LinuxDevice) error {
	oldMask := unix.Umask(0)
	defer unix.Umask(oldMask)
	bind := runningInUserNS()
	for _, d := range append(standardNodes(extra), extra...) {
		if err := makeDevice(root, d, bind); err != nil {
			return err
		}
	}
	for link, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
	} {
		p := "/dev/" + link
		var st unix.Stat_t
		if err := root.Lstat(p, &st); err == nil {
			if link != "ptmx" {
				continue
			}
			if err := root.Remove(p); err != nil {
				return fmt.Errorf("replace /dev/ptmx: %w", err)
			}
		}
		if err := root.Symlink(target, p); err != nil {
			return fmt.Errorf("link /dev/%s: %w", link, err)
		}
	}
	return nil
}

// makeDevice creates one device node as the runtime spec says: mknod with its type, numbers and
// mode, then chown. Inside a user namespace, where mknod is never allowed, and as runc when mknod
// is refused (EPERM), the host's node at the same path is bind-mounted instead.
func makeDevice(root *rootdir.Dir, d specs.LinuxDevice, bind bool) error {
	dir, err := root.MkdirAll(filepath.Dir(filepath.Clean("/"+d.Path)), 0o755)
	if err != nil {
		return fmt.Errorf("create device %s: %w", d.Path, err)
	}
	dir.Close()
	mode, err := deviceMode(d)
	if err != nil {
		return err
	}
	if bind {
		return bindDevice(root, d, nil)
	}
	err = root.Mknod(d.Path, mode, unix.Mkdev(uint32(d.Major), uint32(d.Minor)))
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if errors.Is(err, unix.EPERM) {
		return bindDevice(root, d, err)
	}
	if err != nil {
		return fmt.Errorf("create device %s: mknod: %w", d.Path, err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := root.Lchown(d.Path, uid, gid); err != nil {
		return fmt.Errorf("chown device %s: %w", d.Path, err)
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
