package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
)

// defaultWithin runs Default(o) and gives up after d: a lookup that blocks fails the test instead
// of hanging it.
func defaultWithin(t *testing.T, o Options, d time.Duration) (uint32, error) {
	t.Helper()
	type result struct {
		uid uint32
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := Default(o)
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{uid: s.Process.User.UID}
	}()
	select {
	case r := <-done:
		return r.uid, r.err
	case <-time.After(d):
		t.Fatalf("looking user %q up in the image still blocked after %s (the agent's exec -u and run would hang)", o.User, d)
		return 0, nil
	}
}

// TestAttackUserLookupFIFO: an image whose /etc/passwd (or /etc/group) is a FIFO makes a name lookup
// (`exec -u NAME`, an image's USER) fail at once with an error saying why, instead of blocking the
// caller (the agent) forever on open(2).
func TestAttackUserLookupFIFO(t *testing.T) {
	for _, tt := range []struct{ file, user string }{{"etc/passwd", "evil"}, {"etc/group", "root:evil"}} {
		t.Run(tt.file, func(t *testing.T) {
			rootfs := t.TempDir()
			if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(rootfs, tt.file))
			if err := unix.Mkfifo(filepath.Join(rootfs, tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := defaultWithin(t, Options{ID: "x", Args: []string{"sh"}, User: tt.user, Rootfs: rootfs}, 5*time.Second)
			if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "named pipe") {
				t.Errorf("user %q with a FIFO at /%s: err = %v, want an invalid-argument error naming the named pipe", tt.user, tt.file, err)
			}
		})
	}
}

// TestAttackUserLookupSymlinkToHost: an image whose /etc/passwd is a symlink to a file of the host
// is read inside the image (where the target does not exist), never from the host: the host file's
// users are not found, and nothing of the host file shows in the result.
func TestAttackUserLookupSymlinkToHost(t *testing.T) {
	host := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(host, []byte("evil:x:4242:4242::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"absolute": host,
		"relative": "../../../../../../../../../../.." + host,
	} {
		t.Run(name, func(t *testing.T) {
			rootfs := t.TempDir()
			if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(rootfs, "etc/passwd")); err != nil {
				t.Fatal(err)
			}
			uid, err := defaultWithin(t, Options{ID: "x", Args: []string{"sh"}, User: "evil", Rootfs: rootfs}, 5*time.Second)
			if err == nil {
				t.Fatalf("user evil resolved to uid %d from the host's %s through the image's /etc/passwd symlink", uid, host)
			}
			if !strings.Contains(err.Error(), "no such user") {
				t.Errorf("err = %v, want no such user", err)
			}
		})
	}
}
