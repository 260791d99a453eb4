package image

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// writeLayerTar writes the unpacked layer in dir as a layer tar to w, the inverse of unpack: overlayfs
// whiteouts (0/0 character devices) become .wh.NAME entries and opaque directories get a
// .wh..wh..opq entry; hard links within the layer stay links; owners, modes, times (to the second)
// and security.capability are kept. Entries are in lexical order, so the same directory gives the
// same bytes (and a registry that has the blob is not sent it again).
func writeLayerTar(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	links := map[uint64]string{} // inode -> first name
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		return writeTarEntry(tw, path, rel, links)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func writeTarEntry(tw *tar.Writer, path, rel string, links map[uint64]string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0 {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: filepath.Join(filepath.Dir(rel), whiteoutPrefix+fi.Name()), Mode: 0o600, ModTime: time.Unix(0, 0)})
	}
	var target string
	if fi.Mode()&fs.ModeSymlink != 0 {
		if target, err = os.Readlink(path); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, target)
	if err != nil {
		return err
	}
	hdr.Name = rel
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = int(st.Uid), int(st.Gid), "", ""
	hdr.ModTime = fi.ModTime().Truncate(time.Second)
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	if fi.Mode().IsRegular() && st.Nlink > 1 {
		if first, ok := links[st.Ino]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			links[st.Ino] = rel
		}
	}
	if cap := lgetxattr(path, "security.capability"); cap != nil {
		hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(cap)}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	if fi.IsDir() && string(lgetxattr(path, opaqueXattr)) == "y" {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: filepath.Join(rel, whiteoutOpaque), Mode: 0o600, ModTime: time.Unix(0, 0)})
	}
	return nil
}

// lgetxattr returns path's attribute attr, or nil when it has none.
func lgetxattr(path, attr string) []byte {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, attr, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil || n == 0 {
			return nil
		}
		return buf[:n]
	}
}
