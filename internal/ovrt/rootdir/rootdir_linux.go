package rootdir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is a directory tree opened as a file descriptor; its methods take paths inside it.
type Dir struct {
	f    *os.File
	path string // where the tree is on the host (the descriptor's own path), for messages and checks
}

// Open opens the tree rooted at path, a path the caller trusts (the bundle's root.path, the agent's
// rootfs). Open fails clearly when the kernel lacks openat2 (Linux 5.6).
func Open(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open root", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	resolved, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		resolved = path
	}
	d := &Dir{f: f, path: resolved}
	probe, err := d.openat2(".", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		f.Close()
		if errors.Is(err, unix.ENOSYS) {
			return nil, fmt.Errorf("open root %s: the kernel has no openat2 (Linux 5.6 or later is needed to resolve paths inside a container's root safely)", path)
		}
		return nil, &os.PathError{Op: "open root", Path: path, Err: err}
	}
	probe.Close()
	return d, nil
}

// Close closes the tree's descriptor.
func (d *Dir) Close() error { return d.f.Close() }

// Fd is the tree's descriptor (O_PATH).
func (d *Dir) Fd() int { return int(d.f.Fd()) }

// Path is where the tree is on the host.
func (d *Dir) Path() string { return d.path }

// rel cleans p as a path of the container and makes it relative to the root ("." for the root).
func rel(p string) string {
	c := strings.TrimPrefix(filepath.Clean("/"+p), "/")
	if c == "" {
		return "."
	}
	return c
}

// openat2 resolves p beneath the root as the container would see it.
func (d *Dir) openat2(p string, flags uint64) (*os.File, error) {
	return openat2In(d.Fd(), rel(p), flags, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_MAGICLINKS)
}

func openat2In(dirfd int, p string, flags, resolve uint64) (*os.File, error) {
	how := unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: resolve}
	var err error
	// The kernel returns EAGAIN when a rename raced with a scoped lookup; a few retries settle it.
	for range 32 {
		var fd int
		fd, err = unix.Openat2(dirfd, p, &how)
		if err == nil {
			return os.NewFile(uintptr(fd), p), nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			break
		}
	}
	return nil, err
}

// OpenPath returns an O_PATH handle of p, following symlinks inside the tree only.
func (d *Dir) OpenPath(p string) (*os.File, error) {
	if Unprotected("resolve") || Unprotected("fd") {
		return d.unsafeOpen(p)
	}
	f, err := d.openat2(p, unix.O_PATH)
	if err != nil {
		return nil, d.pathErr("open", p, err)
	}
	return f, nil
}

func (d *Dir) pathErr(op, p string, err error) error {
	return &os.PathError{Op: op, Path: filepath.Join(d.path, rel(p)), Err: err}
}

// MkdirAll makes directory p and every missing parent (with mode, less the umask) and returns an
// O_PATH handle of it. Symlinks on the way, dangling ones included, are followed inside the tree as
// the container would see them (a missing target is created there).
func (d *Dir) MkdirAll(p string, mode uint32) (*os.File, error) {
	if Unprotected("resolve") || Unprotected("fd") {
		return d.unsafeMkdirAll(p, mode)
	}
	return d.create(p, true, mode)
}

// MkFile makes p an empty file (with mode, less the umask) unless something is there already, and
// returns an O_PATH handle of what is at p. Parents and symlinks are handled as in MkdirAll.
func (d *Dir) MkFile(p string, mode uint32) (*os.File, error) {
	if Unprotected("resolve") || Unprotected("fd") {
		return d.unsafeMkFile(p, mode)
	}
	return d.create(p, false, mode)
}

// maxHops bounds the symlinks followed while creating a path, as the kernel's 40.
const maxHops = 40

func (d *Dir) create(p string, dir bool, mode uint32) (*os.File, error) {
	flags := uint64(unix.O_PATH)
	if dir {
		flags |= unix.O_DIRECTORY
	}
	path := rel(p)
	for range maxHops {
		f, err := d.openat2(path, flags)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return nil, d.pathErr("open", p, err)
		}
		f, next, err := d.createOnce(path, dir, mode)
		if err != nil || f != nil {
			return f, err
		}
		path = next
	}
	return nil, d.pathErr("create", p, unix.ELOOP)
}

// createOnce makes what is missing of path, one name at a time in the directory already resolved:
// mkdirat and openat(O_CREAT|O_EXCL) never follow a symlink, and each new component is opened
// without following any. A symlink met on the way ends the attempt with the path to try next, its
// target in place of it (resolved again from the root, so it cannot lead outside).
func (d *Dir) createOnce(path string, dir bool, mode uint32) (_ *os.File, next string, _ error) {
	var parts []string
	for _, c := range strings.Split(path, "/") {
		if c != "" && c != "." {
			parts = append(parts, c)
		}
	}
	cur, err := d.openat2(".", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, "", d.pathErr("open", "/", err)
	}
	defer func() {
		if cur != nil {
			cur.Close()
		}
	}()
	i := 0
	for ; i < len(parts); i++ {
		f, err := d.openat2(strings.Join(parts[:i+1], "/"), unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return nil, "", d.pathErr("open directory", strings.Join(parts[:i+1], "/"), err)
		}
		cur.Close()
		cur = f
	}
	for ; i < len(parts); i++ {
		at, name := strings.Join(parts[:i+1], "/"), parts[i]
		last := i == len(parts)-1
		if name == ".." {
			return nil, "", d.pathErr("create", at, fmt.Errorf("'..' after a missing directory: %w", unix.ENOENT))
		}
		flags := uint64(unix.O_PATH | unix.O_DIRECTORY)
		if last && !dir {
			flags = unix.O_PATH
			fd, err := unix.Openat(int(cur.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
			if err == nil {
				unix.Close(fd)
			} else if !errors.Is(err, unix.EEXIST) {
				return nil, "", d.pathErr("create", at, err)
			}
		} else if err := unix.Mkdirat(int(cur.Fd()), name, mode); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, "", d.pathErr("mkdir", at, err)
		}
		f, err := openat2In(int(cur.Fd()), name, flags, unix.RESOLVE_BENEATH|unix.RESOLVE_NO_SYMLINKS)
		if errors.Is(err, unix.ELOOP) {
			// A symlink (dangling, or it would have resolved): go on from its target.
			buf := make([]byte, unix.PathMax)
			n, err := unix.Readlinkat(int(cur.Fd()), name, buf)
			if err != nil {
				return nil, "", d.pathErr("readlink", at, err)
			}
			target := string(buf[:n])
			if !strings.HasPrefix(target, "/") {
				target = strings.Join(parts[:i], "/") + "/" + target
			}
			return nil, strings.Join(append([]string{target}, parts[i+1:]...), "/"), nil
		}
		if err != nil {
			return nil, "", d.pathErr("open", at, err)
		}
		cur.Close()
		cur = f
	}
	f := cur
	cur = nil
	return f, "", nil
}

// ReadFile reads the regular file p, at most limit bytes: anything else (a FIFO, a device, a
// directory, a file larger than limit) is an error, and nothing blocks.
func (d *Dir) ReadFile(p string, limit int64) ([]byte, error) {
	if Unprotected("resolve") || Unprotected("fd") {
		return d.unsafeReadFile(p, limit)
	}
	h, err := d.openat2(p, unix.O_PATH)
	if err != nil {
		return nil, d.pathErr("open", p, err)
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return nil, d.pathErr("stat", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is %s, not a regular file", filepath.Join(d.path, rel(p)), kind(st.Mode))
	}
	if st.Size > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d read from it", filepath.Join(d.path, rel(p)), st.Size, limit)
	}
	// Re-open the very inode the handle names for reading (O_NONBLOCK in case it changed type: it
	// cannot, but reading must never block).
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(int(h.Fd())), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, d.pathErr("open", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, d.pathErr("read", p, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is more than the %d bytes read from it", filepath.Join(d.path, rel(p)), limit)
	}
	return b, nil
}

func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a named pipe (FIFO)"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symlink"
	}
	return "not a regular file"
}

// at runs fn on the parent directory of p (resolved inside the tree, not created) and the last
// component of p, which fn must not follow.
func (d *Dir) at(op, p string, fn func(dirfd int, name string) error) error {
	if Unprotected("resolve") || Unprotected("fd") {
		return d.unsafeAt(p, fn)
	}
	c := "/" + rel(p)
	if c == "/" {
		return d.pathErr(op, p, unix.EINVAL)
	}
	dir, err := d.openat2(filepath.Dir(c), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return d.pathErr(op, filepath.Dir(c), err)
	}
	defer dir.Close()
	if err := fn(int(dir.Fd()), filepath.Base(c)); err != nil {
		return d.pathErr(op, p, err)
	}
	return nil
}

// Mknod makes the node p (mknodat in p's resolved parent).
func (d *Dir) Mknod(p string, mode uint32, dev uint64) error {
	return d.at("mknod", p, func(dirfd int, name string) error { return unix.Mknodat(dirfd, name, mode, int(dev)) })
}

// Symlink makes p a symlink to target (which is not resolved).
func (d *Dir) Symlink(target, p string) error {
	return d.at("symlink", p, func(dirfd int, name string) error { return unix.Symlinkat(target, dirfd, name) })
}

// Remove removes the file p (not a directory; a symlink itself, not its target).
func (d *Dir) Remove(p string) error {
	return d.at("remove", p, func(dirfd int, name string) error { return unix.Unlinkat(dirfd, name, 0) })
}

// Lchown changes the owner of p itself (-1 leaves an id unchanged).
func (d *Dir) Lchown(p string, uid, gid int) error {
	return d.at("chown", p, func(dirfd int, name string) error {
		return unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// Lstat stats p itself.
func (d *Dir) Lstat(p string, st *unix.Stat_t) error {
	return d.at("lstat", p, func(dirfd int, name string) error {
		return unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
	})
}
