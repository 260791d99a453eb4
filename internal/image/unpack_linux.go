package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
)

// unpackMode selects what an unpacker writes.
type unpackMode int

const (
	// modeLayer unpacks an image layer meant to be an overlayfs lower dir: owners, device nodes and
	// allowed xattrs are kept, and AUFS-style whiteouts become overlayfs whiteouts.
	modeLayer unpackMode = iota
	// modeBaseLayer is modeLayer for the bottom layer of an image: whiteouts are skipped, since they
	// hide nothing there, and overlayfs would list them in directories no other layer has.
	modeBaseLayer
	// modeArchive unpacks an image archive (docker save, OCI layout) to read it: only files,
	// directories and links; symlinks are replaced by hard links to what they name inside the archive
	// so that nothing read afterwards can lead outside it.
	modeArchive
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// unpacker writes a tar stream into a directory it never leaves: every path is resolved with
// openat2(RESOLVE_BENEATH), so an entry whose path or parent symlinks lead outside the directory fails
// with EXDEV and is refused.
type unpacker struct {
	root   int // O_PATH fd of the destination directory
	mode   unpackMode
	stats  unpackStats
	dirs   []dirTime
	links  []string // modeArchive: symlinks to replace at the end
	entry  string   // current entry name, for errors
	source string   // what is unpacked, for errors
}

// unpackStats describes what was unpacked.
type unpackStats struct {
	size      int64 // bytes of regular file content
	whiteouts int   // whiteout and opaque entries, converted or skipped
}

type dirTime struct {
	name         string
	atime, mtime unix.Timespec
}

// unpack extracts the tar stream r into dir (which must exist and be empty) and says what it wrote. A refused or malformed entry fails with errdefs.ErrInvalidArgument naming
// the entry; the caller removes dir on error.
func unpack(ctx context.Context, r io.Reader, dir string, mode unpackMode, source string) (unpackStats, error) {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return unpackStats{}, fmt.Errorf("unpack %s: open %s: %w", source, dir, err)
	}
	defer unix.Close(root)
	u := &unpacker{root: root, mode: mode, source: source}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return unpackStats{}, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return unpackStats{}, errf(errdefs.ErrInvalidArgument, "%s: not a valid tar stream after entry %q: %v", source, u.entry, err)
		}
		u.entry = hdr.Name
		if err := u.write(hdr, tr); err != nil {
			return unpackStats{}, err
		}
	}
	if err := u.finish(); err != nil {
		return unpackStats{}, err
	}
	return u.stats, nil
}

// refuse builds the error for an entry that may not be unpacked.
func (u *unpacker) refuse(format string, args ...any) error {
	return errf(errdefs.ErrInvalidArgument, "%s: tar entry %q refused: %s", u.source, u.entry, fmt.Sprintf(format, args...))
}

// fail wraps a system error while writing the current entry.
func (u *unpacker) fail(op string, err error) error {
	if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP) {
		return u.refuse("%s: path leaves the layer (through \"..\", an absolute path or a symlink)", op)
	}
	return fmt.Errorf("%s: tar entry %q: %s: %w", u.source, u.entry, op, err)
}

// cleanName turns a tar path into a clean relative path ("." for the root) or refuses it.
func (u *unpacker) cleanName(name string) (string, error) {
	c, why := cleanRel(name)
	if why != "" {
		return "", u.refuse("%s", why)
	}
	return c, nil
}

// cleanRel cleans a path found in an archive; why says what is wrong with it, or is empty.
func cleanRel(name string) (clean, why string) {
	switch {
	case name == "":
		return "", "empty name"
	case strings.HasPrefix(name, "/"):
		return "", "absolute path"
	case strings.ContainsRune(name, 0):
		return "", "NUL in name"
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", "path leaves the layer"
	}
	return c, ""
}

// timespec converts t, or the entry's mtime when t is unset.
func timespec(t time.Time, hdr *tar.Header) unix.Timespec {
	if t.IsZero() {
		t = hdr.ModTime
	}
	return unix.NsecToTimespec(t.UnixNano())
}

// openBeneath opens rel (a directory) below the root, never leaving it.
func (u *unpacker) openBeneath(rel string, flags uint64) (int, error) {
	how := &unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 16 {
		fd, err := unix.Openat2(u.root, rel, how)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.ENOSYS) {
			return -1, fmt.Errorf("openat2 is not available (Linux 5.6 or later is needed to unpack images safely): %w", err)
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// openDir opens directory rel below the root; with create, missing components are made (0755, root).
func (u *unpacker) openDir(rel string, create bool) (int, error) {
	fd, err := u.openBeneath(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) || rel == "." {
		return fd, err
	}
	parent, err := u.openBeneath(".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		fd, err := u.openBeneath(prefix, unix.O_RDONLY|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(parent, p, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(parent)
				return -1, err
			}
			fd, err = u.openBeneath(prefix, unix.O_RDONLY|unix.O_DIRECTORY)
		}
		unix.Close(parent)
		if err != nil {
			return -1, err
		}
		parent = fd
	}
	return parent, nil
}

// clear removes whatever exists at base in dir, unless it is a directory and keepDir is set. It
// reports whether a directory was kept.
func clear(dir int, base string, keepDir bool) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false, unix.Unlinkat(dir, base, 0)
	}
	if keepDir {
		return true, nil
	}
	// /proc/self/fd/N is the directory already resolved beneath the root; RemoveAll does not
	// follow symlinks below it.
	return false, os.RemoveAll(fmt.Sprintf("/proc/self/fd/%d/%s", dir, base))
}

// write applies one tar entry to the layer: whiteouts are converted (or skipped), anything else is
// made in its parent directory, opened beneath the root.
func (u *unpacker) write(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := u.cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return u.refuse("the layer root must be a directory")
		}
		u.dirs = append(u.dirs, dirTime{name: ".", atime: timespec(hdr.AccessTime, hdr), mtime: timespec(hdr.ModTime, hdr)})
		return u.meta(u.root, ".", hdr, false)
	}
	dirName, base := path.Dir(name), path.Base(name)
	if u.mode != modeArchive && strings.Contains("/"+dirName, "/"+whiteoutMeta) {
		return nil // inside AUFS metadata (.wh..wh.plnk/...)
	}
	if u.mode != modeArchive && strings.HasPrefix(base, whiteoutPrefix) {
		if base == whiteoutOpaque || !strings.HasPrefix(base, whiteoutMeta) {
			u.stats.whiteouts++
		}
		if u.mode == modeBaseLayer {
			return nil
		}
		return u.whiteout(dirName, base)
	}
	dir, err := u.openDir(dirName, true)
	if err != nil {
		return u.fail("open parent directory", err)
	}
	defer unix.Close(dir)

	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.writeDir(dir, name, base, hdr)
	case tar.TypeReg, tar.TypeRegA:
		return u.writeFile(dir, base, hdr, r)
	case tar.TypeSymlink:
		return u.writeSymlink(dir, name, base, hdr)
	case tar.TypeLink:
		return u.writeHardLink(dir, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return u.writeNode(dir, base, hdr)
	default:
		return u.refuse("unsupported entry type %q", string(hdr.Typeflag))
	}
}

// writeDir makes directory base (name below the root) in dir, keeping one that exists, and records
// its times for the end of the layer.
func (u *unpacker) writeDir(dir int, name, base string, hdr *tar.Header) error {
	kept, err := clear(dir, base, true)
	if err != nil {
		return u.fail("replace", err)
	}
	if !kept {
		if err := unix.Mkdirat(dir, base, 0o700); err != nil {
			return u.fail("mkdir", err)
		}
	}
	u.dirs = append(u.dirs, dirTime{name: name, atime: timespec(hdr.AccessTime, hdr), mtime: timespec(hdr.ModTime, hdr)})
	return u.meta(dir, base, hdr, false)
}

// writeFile replaces base in dir with a regular file holding the entry's content r.
func (u *unpacker) writeFile(dir int, base string, hdr *tar.Header, r io.Reader) error {
	if _, err := clear(dir, base, false); err != nil {
		return u.fail("replace", err)
	}
	fd, err := unix.Openat(dir, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return u.fail("create", err)
	}
	f := os.NewFile(uintptr(fd), base)
	src := &readErr{r: r}
	n, err := io.Copy(f, src)
	u.stats.size += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if src.err != nil {
		return errf(errdefs.ErrInvalidArgument, "%s: tar entry %q: archive is truncated or corrupt: %v", u.source, u.entry, src.err)
	}
	if err != nil {
		return u.fail("write", err)
	}
	return u.meta(dir, base, hdr, true)
}

// writeSymlink replaces base (name below the root) in dir with a symlink. In an image archive the
// link is only recorded (see links).
func (u *unpacker) writeSymlink(dir int, name, base string, hdr *tar.Header) error {
	if _, err := clear(dir, base, false); err != nil {
		return u.fail("replace", err)
	}
	if err := unix.Symlinkat(hdr.Linkname, dir, base); err != nil {
		return u.fail("symlink", err)
	}
	if u.mode == modeArchive {
		u.links = append(u.links, name)
		return nil
	}
	return u.meta(dir, base, hdr, true)
}

// writeHardLink replaces base in dir with a hard link to an entry of the layer; a target outside the
// layer is refused.
func (u *unpacker) writeHardLink(dir int, base string, hdr *tar.Header) error {
	target, why := cleanRel(hdr.Linkname)
	if why != "" {
		return u.refuse("hard link target %q: %s", hdr.Linkname, why)
	}
	if target == "." {
		return u.refuse("hard link to the layer root")
	}
	src, err := u.openDir(path.Dir(target), false)
	if err != nil {
		if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP) {
			return u.refuse("hard link target %q leaves the layer", hdr.Linkname)
		}
		return u.fail("hard link target "+strconv.Quote(hdr.Linkname), err)
	}
	defer unix.Close(src)
	if _, err := clear(dir, base, false); err != nil {
		return u.fail("replace", err)
	}
	if err := unix.Linkat(src, path.Base(target), dir, base, 0); err != nil {
		return u.fail("hard link to "+strconv.Quote(hdr.Linkname), err)
	}
	return nil
}

// writeNode replaces base in dir with a device node or fifo (refused in an image archive).
func (u *unpacker) writeNode(dir int, base string, hdr *tar.Header) error {
	if u.mode == modeArchive {
		return u.refuse("device node or fifo in an image archive")
	}
	if _, err := clear(dir, base, false); err != nil {
		return u.fail("replace", err)
	}
	mode := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	if err := unix.Mknodat(dir, base, mode|0o600, dev); err != nil {
		return u.fail("mknod", err)
	}
	return u.meta(dir, base, hdr, true)
}

// whiteout turns an AUFS whiteout entry into its overlayfs form: .wh..wh..opq marks the directory
// opaque (trusted.overlay.opaque=y), .wh.NAME becomes a 0/0 character device NAME. (Bottom layers
// skip whiteouts instead: they hide nothing there, and overlayfs would list them in directories that
// only that layer has.)
func (u *unpacker) whiteout(dirName, base string) error {
	dir, err := u.openDir(dirName, true)
	if err != nil {
		return u.fail("open whiteout directory", err)
	}
	defer unix.Close(dir)
	switch {
	case base == whiteoutOpaque:
		if err := unix.Fsetxattr(dir, opaqueXattr, []byte("y"), 0); err != nil {
			return u.fail("mark directory opaque", err)
		}
		return nil
	case strings.HasPrefix(base, whiteoutMeta):
		return nil // other AUFS metadata (.wh..wh.plnk, ...): meaningless to overlayfs
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return u.refuse("malformed whiteout")
	}
	if _, err := clear(dir, name, false); err != nil {
		return u.fail("replace", err)
	}
	if err := unix.Mknodat(dir, name, unix.S_IFCHR, 0); err != nil {
		return u.fail("create whiteout", err)
	}
	return nil
}

// meta applies owner, mode, xattrs and (unless deferred for directories) times to base in dir.
func (u *unpacker) meta(dir int, base string, hdr *tar.Header, times bool) error {
	if u.mode != modeArchive {
		if err := unix.Fchownat(dir, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return u.fail("chown", err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(dir, base, uint32(hdr.Mode)&0o7777, 0); err != nil {
			return u.fail("chmod", err)
		}
		if u.mode != modeArchive {
			if err := u.xattrs(dir, base, hdr); err != nil {
				return err
			}
		}
	}
	if !times {
		return nil
	}
	ts := []unix.Timespec{timespec(hdr.AccessTime, hdr), timespec(hdr.ModTime, hdr)}
	if err := unix.UtimesNanoAt(dir, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return u.fail("set times", err)
	}
	return nil
}

// xattrs sets the entry's user.* and security.capability extended attributes. Others (trusted.*,
// in particular trusted.overlay.*, which would steer overlayfs, and security.selinux) are dropped.
func (u *unpacker) xattrs(dir int, base string, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || !(strings.HasPrefix(attr, "user.") || attr == "security.capability") {
			continue
		}
		fd, err := unix.Openat(dir, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return u.fail("open for xattr", err)
		}
		// The O_PATH|O_NOFOLLOW fd is the entry itself; the magic link leads exactly to it.
		err = unix.Setxattr(fmt.Sprintf("/proc/self/fd/%d", fd), attr, []byte(v), 0)
		unix.Close(fd)
		// ENOTSUP: the filesystem has no such xattrs; EPERM: user.* on a device node or fifo.
		if err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return u.fail("set xattr "+attr, err)
		}
	}
	return nil
}

// finish sets directory times (children changed them) and, in archive mode, replaces symlinks.
func (u *unpacker) finish() error {
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		u.entry = d.name
		fd, err := u.openDir(d.name, false)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				continue // replaced by a later entry
			}
			return u.fail("set directory times", err)
		}
		err = unix.UtimesNanoAt(fd, ".", []unix.Timespec{d.atime, d.mtime}, 0)
		unix.Close(fd)
		if err != nil {
			return u.fail("set directory times", err)
		}
	}
	for _, name := range u.links {
		u.entry = name
		if err := u.derefLink(name); err != nil {
			return err
		}
	}
	return nil
}

// derefLink replaces symlink name with a hard link to the regular file it names, resolved as if the
// archive were the root ("/" and ".." stop at it).
func (u *unpacker) derefLink(name string) error {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(u.root, name, how)
	if err != nil {
		return u.refuse("symlink does not lead to a file in the archive: %v", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return u.fail("stat symlink target", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return u.refuse("symlink in an image archive must name a regular file")
	}
	dir, err := u.openDir(path.Dir(name), false)
	if err != nil {
		return u.fail("open parent directory", err)
	}
	defer unix.Close(dir)
	if err := unix.Unlinkat(dir, path.Base(name), 0); err != nil {
		return u.fail("remove symlink", err)
	}
	if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), dir, path.Base(name), unix.AT_SYMLINK_FOLLOW); err != nil {
		return u.fail("link symlink target", err)
	}
	return nil
}

// readErr remembers the error of the reader (the archive), to tell it from write errors.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// openMember opens a regular file of an unpacked archive; name may not lead outside dir.
func openMember(dir, name string) (io.ReadCloser, error) {
	clean, why := cleanRel(name)
	if why != "" {
		return nil, fmt.Errorf("member %q: %s", name, why)
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, clean, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("member %q: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// syncFS flushes the filesystem holding dir (syncfs(2)).
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}
