//go:build ovrt_unprotect

package rootdir

// This file exists only in the ovrt_unprotect test build: it puts back the path-string code the
// protections replaced, so that an attack test can show it fails without them. OVRT_UNPROTECT is a
// comma-separated list of protection names:
//   - resolve: container paths are joined to the host path of the root and used as host paths
//     (symlinks in the image are followed on the host);
//   - fd: container paths are resolved once with filepath-securejoin and then used as host path
//     strings (the race of runc's CVE-2021-30465);
//   - other names are read by the packages that own those protections (ovrt: "rro").

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

const unprotectEnv = "OVRT_UNPROTECT"

// Unprotected reports whether OVRT_UNPROTECT names the protection.
func Unprotected(name string) bool {
	return slices.Contains(strings.Split(os.Getenv(unprotectEnv), ","), name)
}

// UnprotectEnv passes the switches on to the runtime's helper processes.
func UnprotectEnv() []string {
	if v := os.Getenv(unprotectEnv); v != "" {
		return []string{unprotectEnv + "=" + v}
	}
	return nil
}

func (d *Dir) hostPath(p string) string {
	if Unprotected("fd") {
		if s, err := securejoin.SecureJoin(d.path, p); err == nil {
			return s
		}
	}
	return filepath.Join(d.path, p)
}

func (d *Dir) unsafeOpen(p string) (*os.File, error) {
	return os.OpenFile(d.hostPath(p), unix.O_PATH|unix.O_CLOEXEC, 0)
}

func (d *Dir) unsafeMkdirAll(p string, mode uint32) (*os.File, error) {
	h := d.hostPath(p)
	if err := os.MkdirAll(h, os.FileMode(mode)); err != nil {
		return nil, err
	}
	return os.OpenFile(h, unix.O_PATH|unix.O_CLOEXEC, 0)
}

func (d *Dir) unsafeMkFile(p string, mode uint32) (*os.File, error) {
	h := d.hostPath(p)
	if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(h, os.O_CREATE|os.O_RDONLY, os.FileMode(mode))
	if err != nil {
		return nil, err
	}
	f.Close()
	return os.OpenFile(h, unix.O_PATH|unix.O_CLOEXEC, 0)
}

func (d *Dir) unsafeReadFile(p string, max int64) ([]byte, error) {
	f, err := os.Open(d.hostPath(p))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func (d *Dir) unsafeAt(p string, fn func(int, string) error) error {
	return fn(unix.AT_FDCWD, d.hostPath(p))
}
