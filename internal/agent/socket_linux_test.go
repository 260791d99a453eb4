package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
)

// TestSocketModeFromBirth: the API socket never lets in anyone its final mode and group do not: at
// the moment it exists (before listenSocket returns) it is root's alone, and at the end it has the
// mode and group asked for. An unprivileged user cannot connect to a 0600 socket, and a member of its
// group can connect to a 0660 one.
func TestSocketModeFromBirth(t *testing.T) {
	testutil.RequireRoot(t)
	for _, c := range []struct {
		name string
		mode os.FileMode
		gid  int
	}{
		{"root only", 0o600, 0},
		{"group", 0o660, 4242},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "ovsock") // not t.TempDir: its parent is 0700
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "agent.sock")
			var atBirth os.FileMode
			afterListen = func(p string) {
				if fi, err := os.Stat(p); err == nil {
					atBirth = fi.Mode()
				}
			}
			t.Cleanup(func() { afterListen = nil })
			old := syscall.Umask(0o022) // the usual umask: a socket bound under it is 0755
			defer syscall.Umask(old)
			l, err := listenSocket(path, c.mode, c.gid)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if atBirth.Perm()&0o077 != 0 {
				t.Errorf("the socket was %v when it came to exist, want no group or other bits until its group is set", atBirth)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != c.mode || int(st.Gid) != c.gid {
				t.Errorf("socket %v group %d, want %v group %d", fi.Mode().Perm(), st.Gid, c.mode, c.gid)
			}
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					conn.Close()
				}
			}()
			// nobody outside the group, then nobody in it.
			if err := dialAs(t, path, nil); err == nil {
				t.Errorf("an unprivileged user outside the group connected to the %v socket", c.mode)
			}
			err = dialAs(t, path, []uint32{4242})
			if c.gid == 4242 && err != nil {
				t.Errorf("a member of group 4242 could not connect to the 0660 socket: %v", err)
			}
			if c.gid == 0 && err == nil {
				t.Errorf("a member of group 4242 connected to the root-only socket")
			}
		})
	}
}

// dialAs connects to the unix socket path as uid 65534 with groups (none: no supplementary
// groups) and returns the connect error: a copy of this test binary, run with those credentials,
// does it (TestDialHelper). Failing to run the client fails the test.
func dialAs(t *testing.T, path string, groups []uint32) error {
	t.Helper()
	bin := filepath.Join(filepath.Dir(path), "dial.test")
	if _, err := os.Stat(bin); err != nil {
		data, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^TestDialHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "OV_TEST_DIAL="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: groups}}
	out, _ := cmd.CombinedOutput()
	switch s := string(out); {
	case strings.Contains(s, "DIAL-OK"):
		return nil
	case strings.Contains(s, "DIAL-ERR"):
		return errors.New(strings.TrimSpace(s[strings.Index(s, "DIAL-ERR"):]))
	default:
		t.Fatalf("the client as uid 65534 did not run: %s", s)
		return nil
	}
}

// TestDialHelper is dialAs's client: with OV_TEST_DIAL set it connects to that socket and says
// DIAL-OK or DIAL-ERR. Without it, it has nothing to do.
func TestDialHelper(t *testing.T) {
	path := os.Getenv("OV_TEST_DIAL")
	if path == "" {
		return
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		fmt.Println("DIAL-ERR", err)
		return
	}
	c.Close()
	fmt.Println("DIAL-OK")
}
