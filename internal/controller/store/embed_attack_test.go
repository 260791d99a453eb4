package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/testutil"
)

// nobody is the attacker: a process on the controller host without credentials.
const nobody = 65534

// TestAttackEmbeddedEtcdWithoutCredentials: a process on the controller host that is not root can
// neither read nor write the cluster store, on any socket the embedded etcd listens on: etcdctl
// (get, put) and a raw connect are refused. OV_ATTACK_WEAKEN=etcd runs it with the socket and
// directory permissions taken away, to show that the test then fails.
func TestAttackEmbeddedEtcdWithoutCredentials(t *testing.T) {
	testutil.RequireRoot(t) // to act as user nobody
	etcdctl, err := exec.LookPath("etcdctl")
	if err != nil {
		t.Fatalf("etcdctl is missing (Debian package etcd-client, make deps): %v", err)
	}
	if os.Getenv("OV_ATTACK_WEAKEN") == "etcd" {
		t.Log("OV_ATTACK_WEAKEN=etcd: the socket's protection is taken away; this test must fail")
		t.Cleanup(store.WeakenEmbedded())
	}
	// The directories above the data directory are traversable, as /var/lib is: only ov's own
	// permissions may stand in the attacker's way.
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(base); d != "/" && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755) // t.TempDir's parent (made 0700 by Go)
	}
	before := listeners(t)
	e, err := store.StartEmbedded(store.EmbedConfig{Dir: filepath.Join(base, "controller", "etcd"), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st, err := store.Open(store.Config{Endpoints: []string{e.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, _, err := st.CreateSecret(ctx, "probe", []byte("root can")); err != nil {
		t.Fatalf("the controller itself cannot use its store: %v", err)
	}

	var urls []string
	for l := range listeners(t) {
		if !before[l] {
			urls = append(urls, l)
		}
	}
	if len(urls) == 0 {
		t.Fatal("found no socket the embedded etcd listens on; the test cannot attack anything")
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, "unix://") {
			t.Errorf("the embedded etcd listens on %s: TCP reachable by every local process", u)
		}
		t.Run(u, func(t *testing.T) {
			for _, args := range [][]string{{"get", "--prefix", "/ov"}, {"put", "/ov/v1/secrets/probe", "owned"}} {
				cmd := exec.Command(etcdctl, append([]string{"--endpoints", u, "--dial-timeout", "2s", "--command-timeout", "3s"}, args...)...)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
				out, err := cmd.CombinedOutput()
				if err == nil {
					t.Errorf("etcdctl %s as nobody succeeded:\n%s", strings.Join(args, " "), out)
				}
			}
			if path, ok := strings.CutPrefix(u, "unix://"); ok {
				if err := connectAs(nobody, path); err == nil {
					t.Errorf("user nobody connected to %s", path)
				}
			}
		})
	}
	sec, err := st.GetSecret(ctx, "probe")
	if err != nil || string(sec.Value) != "root can" {
		t.Errorf("the store changed under the attack: %q, %v", sec.Value, err)
	}
}

// connectAs connects to a unix socket from one OS thread whose file-system identity is uid (as a
// process of that user would), and closes the connection.
func connectAs(uid int, path string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the thread is thrown away with its changed identity: never unlocked
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(uid), 0, 0); e != 0 {
			errc <- e
			return
		}
		syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0)
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer syscall.Close(fd)
		errc <- syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
	}()
	select {
	case err := <-errc:
		return err
	case <-time.After(5 * time.Second):
		return fmt.Errorf("connect %s: timeout", path)
	}
}

// listeners returns the listening sockets of this process as URLs: http://ADDR:PORT for TCP,
// unix://PATH for unix sockets.
func listeners(t *testing.T) map[string]bool {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	out := map[string]bool{}
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		eachLine(t, f, func(fs []string) {
			if len(fs) > 9 && fs[3] == "0A" && inodes[fs[9]] { // LISTEN
				out["http://"+hexAddr(fs[1])] = true
			}
		})
	}
	eachLine(t, "/proc/self/net/unix", func(fs []string) {
		if len(fs) > 7 && fs[3] == "00010000" && inodes[fs[6]] { // __SO_ACCEPTCON: listening
			out["unix://"+fs[7]] = true
		}
	})
	return out
}

func eachLine(t *testing.T, file string, fn func([]string)) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fn(strings.Fields(sc.Text()))
	}
}

// hexAddr renders a /proc/net/tcp address (hex, little-endian IPv4) as HOST:PORT; IPv6 as [hex]:PORT.
func hexAddr(s string) string {
	host, port, _ := strings.Cut(s, ":")
	var p int
	fmt.Sscanf(port, "%X", &p)
	if len(host) == 8 {
		var a uint32
		fmt.Sscanf(host, "%X", &a)
		return fmt.Sprintf("%d.%d.%d.%d:%d", byte(a), byte(a>>8), byte(a>>16), byte(a>>24), p)
	}
	return fmt.Sprintf("[%s]:%d", host, p)
}
