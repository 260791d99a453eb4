package ovrt

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/internal/ovrt/spec"
	"github.com/ovnet/ov/internal/testutil"
)

// Tests of the points where ovrt behaves as runc 1.1.5 (docs/runtime.md, "runc compatibility").

// TestAmbientCapabilitiesAsRunc: an ambient capability that is not inheritable cannot be raised;
// runc leaves it out, so does ovrt (it used to fail the container: "raise ambient capability 5").
func TestAmbientCapabilitiesAsRunc(t *testing.T) {
	rt := newRuntime(t)
	id := testutil.UniqueName("amb")
	dir := newBundle(t, spec.Options{ID: id, Args: []string{"sh", "-c", "grep -E '^Cap(Inh|Prm|Eff|Amb):' /proc/self/status | sed 's/:[[:space:]]*/=/'"}},
		func(s *specs.Spec) {
			both := []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"}
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: both, Effective: both, Permitted: both,
				Inheritable: []string{"CAP_NET_BIND_SERVICE"}, Ambient: both}
			s.Process.User = specs.User{UID: 1000, GID: 1000}
		})
	out, errOut, st := run(t, rt, id, dir)
	if st.Code != 0 {
		t.Fatalf("exit %d; stderr: %s", st.Code, errOut)
	}
	// Only CAP_NET_BIND_SERVICE (10) is ambient, so a uid 1000 process keeps only it across execve.
	f := facts(out)
	for k, v := range map[string]string{"CapInh": "0000000000000400", "CapAmb": "0000000000000400", "CapPrm": "0000000000000400", "CapEff": "0000000000000400"} {
		if f[k] != v {
			t.Errorf("%s = %q, want %q; output:\n%s", k, f[k], v, out)
		}
	}
}

// TestStandardDevicesAlwaysAllowed: with device rules that deny everything (as `runc spec` writes
// them), the standard devices still work, as in runc; other devices stay denied. Busybox sh opens
// /dev/null for a background job: without the standard rules the script died at once and kill then
// found the container stopped.
func TestStandardDevicesAlwaysAllowed(t *testing.T) {
	rt := newRuntime(t)
	id := testutil.UniqueName("stddev")
	script := `for d in null zero full random urandom tty; do if [ -c /dev/$d ] && (: </dev/$d) 2>/dev/null; then echo $d=ok; else echo $d=denied; fi; done
mknod /dev/mem1 c 1 1 && echo mknod=ok
if head -c 1 /dev/mem1 >/dev/null 2>&1; then echo mem=ok; else echo mem=denied; fi
trap 'touch /TERM' TERM; echo ready=1; sleep 10 & wait $!`
	dir := newBundle(t, spec.Options{ID: id, Args: []string{"sh", "-c", script}}, func(s *specs.Spec) {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := create(t, rt, id, dir, CreateOptions{Stdout: w, Stderr: w})
	w.Close()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var out []string
	for l := range lines {
		out = append(out, l)
		if l == "ready=1" {
			break
		}
	}
	f := facts(strings.Join(out, "\n"))
	for k, v := range map[string]string{"null": "ok", "zero": "ok", "full": "ok", "random": "ok", "urandom": "ok", "tty": "denied", "mknod": "ok", "mem": "denied", "ready": "1"} {
		// tty: the node is there and allowed, but a process without a controlling terminal gets ENXIO.
		if f[k] != v {
			t.Errorf("%s = %q, want %q; output:\n%s", k, f[k], v, strings.Join(out, "\n"))
		}
	}
	if t.Failed() {
		return
	}
	// TERM is best sent while the shell waits for sleep (sent earlier, the trap runs, then wait waits
	// the 10 s): once sleep runs, the shell is at most one builtin away from waiting.
	testutil.Eventually(t, 5*time.Second, func() error {
		if pids, err := c.Processes(); err != nil || len(pids) < 2 {
			return fmt.Errorf("processes %v, %v; want sh and sleep", pids, err)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	if err := c.Kill(syscall.SIGTERM, false); err != nil {
		t.Fatalf("kill TERM: %v", err)
	}
	done := make(chan ExitStatus, 1)
	go func() { st, _ := c.Wait(); done <- st }()
	select {
	case st := <-done:
		if st.Code != 143 && st.Code != 0 {
			t.Errorf("exit %+v after TERM", st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the container did not end after TERM")
	}
	if _, err := os.Stat(filepath.Join(dir, "rootfs", "TERM")); err != nil {
		t.Errorf("the TERM trap did not run: %v", err)
	}
}

// TestLinuxDevicesMknod: a device of linux.devices that the host does not have is made with mknod,
// with the spec's type, numbers, mode and owner (it used to be bind-mounted from the host's
// /dev/test1, which does not exist).
func TestLinuxDevicesMknod(t *testing.T) {
	rt := newRuntime(t)
	id := testutil.UniqueName("mknod")
	if _, err := os.Stat("/dev/test1"); err == nil {
		testutil.NotApplicable(t, "the host has a /dev/test1")
	}
	mode := os.FileMode(0o620)
	uid, gid := uint32(5), uint32(6)
	script := `stat -c 'test1=%t:%T %a %u:%g %F' /dev/test1; echo x >/dev/test1 && echo write=ok
stat -c 'fifo=%a %F' /dev/sub/fifo1`
	dir := newBundle(t, spec.Options{ID: id, Args: []string{"sh", "-c", script}}, func(s *specs.Spec) {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
		s.Linux.Devices = []specs.LinuxDevice{
			{Path: "/dev/test1", Type: "c", Major: 1, Minor: 3, FileMode: &mode, UID: &uid, GID: &gid},
			{Path: "/dev/sub/fifo1", Type: "p"},
		}
	})
	out, errOut, st := run(t, rt, id, dir)
	if st.Code != 0 {
		t.Fatalf("exit %d; stdout: %s; stderr: %s", st.Code, out, errOut)
	}
	f := facts(out)
	for k, v := range map[string]string{"test1": "1:3 620 5:6 character special file", "write": "ok", "fifo": "666 fifo"} {
		if f[k] != v {
			t.Errorf("%s = %q, want %q; output:\n%s", k, f[k], v, out)
		}
	}
}
