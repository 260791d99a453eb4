package ovrt

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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

// holder starts a process that holds namespaces for a container to join, and kills it at the end.
func holder(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// TestJoinUserNamespace joins a user namespace made by another process (with linux.namespaces[].path,
// as runc): the container sees that namespace's maps (none are written), is its root, and the
// namespaces it creates belong to it, so it can mount its /proc, /sys and tmpfs as usual.
func TestJoinUserNamespace(t *testing.T) {
	rt := newRuntime(t)
	id := testutil.UniqueName("joinuser")
	const hostID = 300000
	h := exec.Command("sleep", "1000")
	h.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: 65536}}}
	pid := holder(t, h)
	wantMap, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		t.Fatal(err)
	}
	wantNS, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid))
	script := `echo uidmap=$(cat /proc/self/uid_map); echo userns=$(readlink /proc/self/ns/user); echo uid=$(id -u)
echo pid=$$; touch /tmp/x && echo write=ok; ls /proc/1 >/dev/null && echo proc=ok`
	dir := newBundle(t, spec.Options{ID: id, Args: []string{"sh", "-c", script}}, func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: fmt.Sprintf("/proc/%d/ns/user", pid)})
		delete(s.Linux.Sysctl, "net.ipv4.ping_group_range") // names groups this namespace does not map
	})
	// The namespace's root (host uid 300000) must reach the rootfs, and own its /tmp to write there.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(dir, "rootfs", "tmp"), hostID, hostID); err != nil {
		t.Fatal(err)
	}
	out, errOut, st := run(t, rt, id, dir)
	if st.Code != 0 {
		t.Fatalf("exit %d; stdout: %s; stderr: %s", st.Code, out, errOut)
	}
	f := facts(out)
	for k, v := range map[string]string{"uidmap": strings.Join(strings.Fields(string(wantMap)), " "), "userns": wantNS,
		"uid": "0", "pid": "1", "write": "ok", "proc": "ok"} {
		if f[k] != v {
			t.Errorf("%s = %q, want %q; output:\n%s", k, f[k], v, out)
		}
	}
}

// TestJoinMountNamespace joins a mount namespace by path: the container sees a mount that exists
// only in that namespace (below its rootfs), not on the host.
func TestJoinMountNamespace(t *testing.T) {
	rt := newRuntime(t)
	unshare := testutil.RequireBinary(t, "unshare", "util-linux")
	id := testutil.UniqueName("joinmnt")
	dir := newBundle(t, spec.Options{ID: id, Args: []string{"sh", "-c", "cat /mnt/only/marker"}}, nil)
	only := filepath.Join(dir, "rootfs", "mnt", "only")
	if err := os.MkdirAll(only, 0o755); err != nil {
		t.Fatal(err)
	}
	pid := holder(t, exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c",
		"mount -t tmpfs tmpfs "+only+" && echo only-there >"+only+"/marker && exec sleep 1000"))
	testutil.Eventually(t, 5*time.Second, func() error {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s/marker", pid, only)); err != nil || string(b) != "only-there\n" {
			return fmt.Errorf("the holder's mount is not there yet: %q, %v", b, err)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(only, "marker")); err == nil {
		t.Fatal("the holder's mount is visible on the host")
	}
	s := readSpec(t, dir)
	for i, n := range s.Linux.Namespaces {
		if n.Type == specs.MountNamespace {
			s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/mnt", pid)
		}
	}
	writeSpec(t, dir, s)
	out, errOut, st := run(t, rt, id, dir)
	if st.Code != 0 || out != "only-there\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want the marker of the joined namespace's mount", st.Code, out, errOut)
	}
}

func readSpec(t *testing.T, dir string) *specs.Spec {
	t.Helper()
	var s specs.Spec
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

// TestLinuxDevicesInUserNamespace: inside a user namespace, where mknod is never allowed, a device
// of linux.devices is the host's node bind-mounted at the same path (as runc); when the host has
// none, create fails and says so.
func TestLinuxDevicesInUserNamespace(t *testing.T) {
	rt := newRuntime(t)
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		testutil.Skipf(t, "the host has no /dev/kmsg: %v", err)
	}
	if _, err := os.Stat("/dev/test1"); err == nil {
		testutil.NotApplicable(t, "the host has a /dev/test1; TestLinuxDevicesMknod covers mknod")
	}
	id := testutil.UniqueName("usdev")
	dir := newBundle(t, spec.Options{ID: id, Args: []string{"sh", "-c",
		"stat -c 'kmsg=%t:%T %F' /dev/kmsg; grep -q ' /dev/kmsg ' /proc/self/mountinfo && echo bind=yes"}},
		func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
			delete(s.Linux.Sysctl, "net.ipv4.ping_group_range")
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11}}
		})
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, st := run(t, rt, id, dir)
	if f := facts(out); st.Code != 0 || f["kmsg"] != "1:b character special file" || f["bind"] != "yes" {
		t.Errorf("exit %d, output:\n%s%s\nwant /dev/kmsg (1:11) bind-mounted from the host", st.Code, out, errOut)
	}
	s := readSpec(t, dir)
	s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/test1", Type: "c", Major: 1, Minor: 3}}
	writeSpec(t, dir, s)
	_, err := rt.Create(id+"b", CreateOptions{Bundle: dir})
	if err == nil || !strings.Contains(err.Error(), "inside a user namespace devices are bind-mounted from the host") {
		t.Errorf("create with /dev/test1 in a user namespace: %v; want the reason it cannot be made", err)
	}
}
