package ovrt

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ovrt/cgroup"
	"github.com/ovnet/ov/internal/ovrt/spec"
	"github.com/ovnet/ov/internal/testutil"
)

func TestMain(m *testing.M) {
	// The test binary is the runtime binary: its containers' init and exec helpers are this program.
	Init()
	os.Exit(m.Run())
}

// newBundle writes a bundle with a busybox rootfs and Docker's default spec for o (ID and Args are
// required), adjusted by edit.
func newBundle(t *testing.T, o spec.Options, edit func(*specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	testutil.BusyboxRootfs(t, filepath.Join(dir, "rootfs"))
	s, err := spec.Default(o)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(s)
	}
	writeSpec(t, dir, s)
	return dir
}

func writeSpec(t *testing.T, dir string, s *specs.Spec) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func newRuntime(t *testing.T) *Runtime {
	t.Helper()
	testutil.RequireRoot(t)
	rt, err := New(Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// create creates a container and deletes it (forcibly) when the test ends.
func create(t *testing.T, rt *Runtime, id, dir string, opts CreateOptions) *Container {
	t.Helper()
	opts.Bundle = dir
	c, err := rt.Create(id, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, err := rt.Load(id); err == nil {
			_ = c.Delete(true)
		}
	})
	return c
}

// run runs the container to completion and returns its stdout, stderr and exit status.
func run(t *testing.T, rt *Runtime, id, dir string) (string, string, ExitStatus) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := create(t, rt, id, dir, CreateOptions{Stdout: &stdout, Stderr: &stderr})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), st
}

// facts parses "key=value" lines.
func facts(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestIsolation checks from inside a container with Docker's defaults what a user relies on.
func TestIsolation(t *testing.T) {
	rt := newRuntime(t)
	var masked []string
	for _, p := range spec.MaskedPaths {
		masked = append(masked, p)
	}
	script := `
echo pid=$$
echo hostname=$(hostname)
echo procs=$(ls /proc | grep -E '^[0-9]+$' | wc -l)
echo comms=$(cat /proc/[0-9]*/comm | sort -u | tr '\n' ' ')
echo links=$(ls /sys/class/net | tr '\n' ' ')
grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | sed 's/:[[:space:]]*/=/'
unshare -U true 2>/dev/null; echo unshare=$?
unshare -n true 2>&1 | grep -q 'Operation not permitted' && echo unshare_eperm=yes
for p in ` + strings.Join(masked, " ") + `; do
  if [ -d $p ]; then echo "masked $p=$(ls -A $p | wc -l)"; elif [ -e $p ]; then echo "masked $p=$(cat $p | wc -c)"; fi
done
echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null; echo procsys_write=$?
touch /sys/ovrt-test 2>/dev/null; echo sys_write=$?
echo uid=$(id -u)
echo nofile=$(ulimit -n)
echo cwd=$(pwd)
echo foo=$FOO
echo cgpaths=$(cut -d: -f3 /proc/self/cgroup | sort -u | tr '\n' ' ')
echo pidsmax=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)
`
	dir := newBundle(t, spec.Options{ID: "iso", Hostname: "isolated", PidsLimit: 99, Cwd: "/tmp", Env: []string{"FOO=bar"},
		Args: []string{"sh", "-c", script}}, nil)
	out, errOut, st := run(t, rt, "iso", dir)
	if st.Code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", st.Code, errOut)
	}
	f := facts(out)
	want := map[string]string{
		"pid":           "1",
		"hostname":      "isolated",
		"links":         "lo",
		"CapEff":        "00000000a80425fb", // Docker's 14 default capabilities
		"NoNewPrivs":    "1",
		"Seccomp":       "2", // filter mode
		"unshare_eperm": "yes",
		"uid":           "0",
		"nofile":        "1024", // Docker's RLIMIT_NOFILE soft limit
		"cwd":           "/tmp",
		"foo":           "bar",
		"cgpaths":       "/",  // its own cgroup namespace, rooted at its cgroup
		"pidsmax":       "99", // /sys/fs/cgroup shows its own cgroup
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("%s = %q, want %q\noutput:\n%s", k, f[k], v, out)
		}
	}
	if f["unshare"] == "0" {
		t.Errorf("unshare succeeded inside the container; the default seccomp profile must deny it")
	}
	// Only the shell and its pipelines: a handful, none of them this test.
	if n, err := strconv.Atoi(f["procs"]); err != nil || n > 10 {
		t.Errorf("%s processes visible in the container's /proc, want only the container's own", f["procs"])
	}
	self, _ := os.ReadFile("/proc/self/comm")
	if strings.Contains(" "+f["comms"]+" ", " "+strings.TrimSpace(string(self))+" ") {
		t.Errorf("the test process (%s) is visible inside the container: %s", strings.TrimSpace(string(self)), f["comms"])
	}
	for _, k := range []string{"procsys_write", "sys_write"} {
		if f[k] == "0" || f[k] == "" {
			t.Errorf("%s = %q: writing succeeded, want a failure", k, f[k])
		}
	}
	// Every masked path that exists on the host and shows something there shows nothing inside.
	checked := 0
	for _, p := range masked {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		hostSize := fi.Size()
		if fi.IsDir() {
			ents, _ := os.ReadDir(p)
			hostSize = int64(len(ents))
		} else if b, err := os.ReadFile(p); err == nil {
			hostSize = int64(len(b))
		}
		got, ok := f["masked "+p]
		if !ok {
			t.Errorf("masked path %s exists on the host but not in the container", p)
			continue
		}
		if got != "0" {
			t.Errorf("masked path %s reveals %s bytes/entries inside the container (host: %d)", p, got, hostSize)
		}
		if hostSize > 0 {
			checked++
		}
	}
	if checked == 0 {
		t.Errorf("no masked path has content on the host: the test proves nothing")
	}
}

// TestOtherRootfsInvisible checks that a container cannot find another container's files.
func TestOtherRootfsInvisible(t *testing.T) {
	rt := newRuntime(t)
	find := []string{"sh", "-c", "find / -path /proc -prune -o -path /sys -prune -o -name 'marker-a-*' -print"}
	a := newBundle(t, spec.Options{ID: "rootfs-a", Args: find}, nil)
	marker := "marker-a-" + testutil.UniqueName("m")
	if err := os.WriteFile(filepath.Join(a, "rootfs", marker), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	cA := create(t, rt, "rootfs-a", a, CreateOptions{})
	_ = cA // created and waiting: its rootfs is mounted in its own namespace
	b := newBundle(t, spec.Options{ID: "rootfs-b", Args: find}, nil)
	outB, _, _ := run(t, rt, "rootfs-b", b)
	if strings.Contains(outB, marker) {
		t.Errorf("container b sees container a's file:\n%s", outB)
	}
	a2 := newBundle(t, spec.Options{ID: "rootfs-a2", Args: find}, nil)
	os.WriteFile(filepath.Join(a2, "rootfs", marker), []byte("a"), 0o644)
	outA, _, _ := run(t, rt, "rootfs-a2", a2)
	if !strings.Contains(outA, marker) {
		t.Errorf("a container does not find its own marker file (the search is broken):\n%s", outA)
	}
}

func TestMemoryLimitOOMKill(t *testing.T) {
	rt := newRuntime(t)
	// dd holds a 256 MiB buffer: far above the 32 MiB limit (this host has no swap; the limit
	// includes swap anyway).
	dir := newBundle(t, spec.Options{ID: "oom", Memory: 32 << 20, MemorySwap: 32 << 20,
		Args: []string{"sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=256M count=1"}}, nil)
	var stderr bytes.Buffer
	c := create(t, rt, "oom", dir, CreateOptions{Stderr: &stderr})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.Signal != syscall.SIGKILL || st.Code != 137 || !st.OOMKilled {
		t.Errorf("exit = %+v, want killed by SIGKILL (137) with OOMKilled; stderr: %s", st, stderr.String())
	}
	s := c.State()
	if s.Status != specs.StateStopped || !s.OOMKilled || s.Annotations[AnnotationOOMKilled] != "true" {
		t.Errorf("state = %+v, want stopped and OOM killed", s)
	}
}

func TestPidsLimitStopsForkBomb(t *testing.T) {
	rt := newRuntime(t)
	const limit = 16
	// Try to start 100 sleepers; forks beyond the limit fail. Then report and keep running.
	// The bomb runs in a child shell, which dies at its first failed fork; the init goes on.
	script := `sh -c 'i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done'; echo forked; exec sleep 1000`
	dir := newBundle(t, spec.Options{ID: "pids", PidsLimit: limit, Args: []string{"sh", "-c", script}}, nil)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var stderr bytes.Buffer
	c := create(t, rt, "pids", dir, CreateOptions{Stdout: w, Stderr: &stderr})
	w.Close()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "forked\n" {
		t.Fatalf("read %q, %v; stderr: %s", line, err, stderr.String())
	}
	pids, err := c.Processes()
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) > limit {
		t.Errorf("%d processes in the container, above the pids limit %d", len(pids), limit)
	}
	if len(pids) < limit/2 {
		t.Errorf("only %d processes started: the fork bomb did not run", len(pids))
	}
	if err := c.Delete(true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "fork") {
		t.Errorf("the shell reported no failed fork; stderr: %q", stderr.String())
	}
}

// TestLifecycleAndDeleteLeavesNothing drives the OCI states and checks that delete removes every
// mount, cgroup and state file of the container.
func TestLifecycleAndDeleteLeavesNothing(t *testing.T) {
	rt := newRuntime(t)
	dir := newBundle(t, spec.Options{ID: "life", Args: []string{"sleep", "1000"}}, nil)
	c := create(t, rt, "life", dir, CreateOptions{})
	if s := c.State(); s.Status != specs.StateCreated || s.Pid != c.Pid() {
		t.Fatalf("after create: %+v, want created with the init's pid", s)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	rootfs := filepath.Join(dir, "rootfs")
	if bytes.Contains(mounts, []byte(rootfs)) {
		t.Errorf("the container's rootfs mount is visible in the host's mount table")
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if s := c.State(); s.Status != specs.StateRunning {
		t.Fatalf("after start: %s, want running", s.Status)
	}
	if err := c.Start(); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second start: %v, want ErrConflict", err)
	}
	if err := c.Delete(false); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("delete of a running container: %v, want ErrConflict", err)
	}
	if err := c.Kill(syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Wait(); st.Signal != syscall.SIGKILL {
		t.Errorf("exit %+v, want SIGKILL", st)
	}
	if s := c.State(); s.Status != specs.StateStopped {
		t.Errorf("after kill: %s, want stopped", s.Status)
	}
	if err := c.Kill(syscall.SIGTERM, false); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("kill of a stopped container: %v, want ErrConflict", err)
	}
	cgPath := c.State().CgroupPath
	if err := c.Delete(false); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Load("life"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("load after delete: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(rt.cfg.Root, "life")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left after delete: %v", err)
	}
	if _, err := cgroup.Load(cgPath); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("cgroup %s left after delete: %v", cgPath, err)
	}
	mounts, _ = os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mounts, []byte(rootfs)) {
		t.Errorf("a mount of the container is left on the host")
	}
}

func TestBadBundles(t *testing.T) {
	rt := newRuntime(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		class error
		says  string
	}{
		{"missing rootfs", func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, "rootfs"))
		}, errdefs.ErrNotFound, "root filesystem"},
		{"malformed config.json", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion": "1.0.2", "process": {`), 0o644)
		}, errdefs.ErrInvalidArgument, "config.json is not a valid OCI runtime spec"},
		{"no config.json", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "config.json"))
		}, errdefs.ErrNotFound, "no config.json"},
		{"unknown namespace type", func(t *testing.T, dir string) {
			s, _ := spec.Default(spec.Options{ID: "bad", Args: []string{"true"}})
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
			writeSpec(t, dir, s)
		}, errdefs.ErrInvalidArgument, `unknown namespace type "bogus"`},
		{"program not found", func(t *testing.T, dir string) {
			s, _ := spec.Default(spec.Options{ID: "bad", Args: []string{"no-such-program"}})
			writeSpec(t, dir, s)
		}, nil, `"no-such-program": executable file not found`},
		{"namespace path missing", func(t *testing.T, dir string) {
			s, _ := spec.Default(spec.Options{ID: "bad", Args: []string{"true"}, NetNSPath: "/run/netns/ovrt-no-such-ns"})
			writeSpec(t, dir, s)
		}, errdefs.ErrNotFound, "/run/netns/ovrt-no-such-ns"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("bad%d", i)
			dir := newBundle(t, spec.Options{ID: id, Args: []string{"true"}, CgroupsPath: "/ovrt-test/" + id}, nil)
			tt.setup(t, dir)
			c, err := rt.Create(id, CreateOptions{Bundle: dir})
			if err == nil {
				c.Delete(true)
				t.Fatal("create succeeded")
			}
			if tt.class != nil && !errors.Is(err, tt.class) {
				t.Errorf("error %v, want class %v", err, tt.class)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %q does not say %q", err, tt.says)
			}
			if _, err := os.Stat(filepath.Join(rt.cfg.Root, id)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state directory left behind: %v", err)
			}
			if _, err := cgroup.Load("/ovrt-test/" + id); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("cgroup left behind: %v", err)
			}
		})
	}
}

func nsLinks(t *testing.T, pid int) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, ns := range []string{"ipc", "uts", "net", "pid", "cgroup", "mnt", "user"} {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil {
			t.Fatal(err)
		}
		m[ns] = l
	}
	return m
}

func TestExecJoinsNamespaces(t *testing.T) {
	rt := newRuntime(t)
	dir := newBundle(t, spec.Options{ID: "exec", Hostname: "execbox", Args: []string{"sleep", "1000"}}, nil)
	c := create(t, rt, "exec", dir, CreateOptions{})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs", "only-here"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	p := *c.Spec().Process
	p.Args = []string{"sh", "-c", "echo hostname=$(hostname); echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); ls /only-here && echo root=ok; " +
		"grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | sed 's/:[[:space:]]*/=/'; read x; echo in=$x; exit 5"}
	stdin, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	proc, err := c.Exec(ExecOptions{Process: p, Stdin: stdin, Stdout: &out, Stderr: &errOut})
	stdin.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The process waits for its input: its namespaces can be read meanwhile.
	got, want := nsLinks(t, proc.Pid), nsLinks(t, c.Pid())
	w.Write([]byte("hello\n"))
	for ns := range want {
		if got[ns] != want[ns] {
			t.Errorf("exec'd process is in %s namespace %s, the container's is %s", ns, got[ns], want[ns])
		}
	}
	st, err := proc.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 5 {
		t.Errorf("exit code %d, want 5; stderr: %s", st.Code, errOut.String())
	}
	f := facts(out.String())
	for k, v := range map[string]string{"hostname": "execbox", "pid1": "sleep 1000", "root": "ok", "in": "hello",
		"CapEff": "00000000a80425fb", "NoNewPrivs": "1", "Seccomp": "2"} {
		if f[k] != v {
			t.Errorf("%s = %q, want %q; output:\n%s", k, f[k], v, out.String())
		}
	}
	p.Args = []string{"no-such-program"}
	if _, err := c.Exec(ExecOptions{Process: p}); err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("exec of a missing program: %v, want 'executable file not found'", err)
	}
}

func TestUserNamespace(t *testing.T) {
	rt := newRuntime(t)
	dir := newBundle(t, spec.Options{ID: "userns", Args: []string{"sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; echo uid=$(id -u); touch /tmp/x && echo write=ok"}},
		func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
			// Docker's "0 2147483647" names groups this namespace does not map.
			delete(s.Linux.Sysctl, "net.ipv4.ping_group_range")
		})
	// The mapped root (host uid 200000) must reach the rootfs, and own its /tmp to write there.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(dir, "rootfs", "tmp"), 200000, 200000); err != nil {
		t.Fatal(err)
	}
	out, errOut, st := run(t, rt, "userns", dir)
	if st.Code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", st.Code, errOut)
	}
	if strings.Count(out, "200000") != 2 || !strings.Contains(out, "uid=0") || !strings.Contains(out, "write=ok") {
		t.Errorf("output:\n%s\nwant uid and gid maps 0 -> 200000, uid 0 and a writable /tmp", out)
	}

	// exec joins the user namespace (first), then the mount namespace.
	var cfg specs.Spec
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Process.Args = []string{"sleep", "1000"}
	writeSpec(t, dir, &cfg)
	c := create(t, rt, "userns2", dir, CreateOptions{})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p := *c.Spec().Process
	p.Args = []string{"sh", "-c", "cat /proc/self/uid_map; echo uid=$(id -u)"}
	var execOut bytes.Buffer
	proc, err := c.Exec(ExecOptions{Process: p, Stdout: &execOut, Stderr: &execOut})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := proc.Wait(); err != nil || st.Code != 0 {
		t.Fatalf("exec: %+v %v: %s", st, err, execOut.String())
	}
	if !strings.Contains(execOut.String(), "200000") || !strings.Contains(execOut.String(), "uid=0") {
		t.Errorf("exec'd process output:\n%s\nwant the container's map 0 -> 200000 and uid 0", execOut.String())
	}
}

func TestParseSignal(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want syscall.Signal
	}{{"KILL", syscall.SIGKILL}, {"SIGTERM", syscall.SIGTERM}, {"hup", syscall.SIGHUP}, {"9", syscall.SIGKILL}, {"USR1", syscall.SIGUSR1}} {
		got, err := ParseSignal(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"NOPE", "0", "99", ""} {
		if _, err := ParseSignal(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseSignal(%q): %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// TestRuntimeBinaryCannotBeOverwritten replays CVE-2019-5736: take hold of the container init's
// executable through /proc/<pid>/exe while the init runs the runtime binary, then try to open it
// for writing once the container process has replaced it. Even the host's root must fail.
func TestRuntimeBinaryCannotBeOverwritten(t *testing.T) {
	testutil.RequireRoot(t)
	// A copy of this test binary as the runtime binary: unlike the test binary, nothing else runs it,
	// so once the init has exec'd the container process it is free to be opened for writing.
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "ovrt")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	rt, err := New(Config{Root: t.TempDir(), Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	dir := newBundle(t, spec.Options{ID: "cve", Args: []string{"sleep", "1000"}}, nil)
	c := create(t, rt, "cve", dir, CreateOptions{})
	exe, err := os.OpenFile(fmt.Sprintf("/proc/%d/exe", c.Pid()), unix.O_PATH, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// Once the init has exec'd sleep, the runtime binary is no longer busy.
	testutil.Eventually(t, 30*time.Second, func() error {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c.Pid()))
		if !strings.HasPrefix(string(b), "sleep") {
			return fmt.Errorf("init still runs %q", b)
		}
		return nil
	})
	w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", exe.Fd()), os.O_WRONLY, 0)
	if err == nil {
		// Rewrite the ELF magic's first byte with itself: harmless, but must be refused.
		_, err = w.WriteAt([]byte{0x7f}, 0)
		w.Close()
	}
	if err == nil {
		t.Fatal("the runtime binary the init ran from can be written through /proc/<pid>/exe")
	}
	if !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EPERM) {
		t.Errorf("write: %v, want EROFS (read-only bind) or EPERM (sealed memfd)", err)
	}
}

// TestUserCapabilitiesAndSeccompWithoutNoNewPrivs runs as a non-root user with one capability in
// all five sets (ambient, so it survives execve as non-root), and without no_new_privs: the filter
// must then be loaded while the process still holds CAP_SYS_ADMIN, and still be in force.
func TestUserCapabilitiesAndSeccompWithoutNoNewPrivs(t *testing.T) {
	rt := newRuntime(t)
	script := `grep -E '^(NoNewPrivs|Seccomp|Cap...):' /proc/self/status | sed 's/:[[:space:]]*/=/'; echo uid=$(id -u) gid=$(id -g) groups=$(id -G)`
	dir := newBundle(t, spec.Options{ID: "nnp", User: "1000:1000", Args: []string{"sh", "-c", script}},
		func(s *specs.Spec) {
			s.Process.NoNewPrivileges = false
			s.Process.User.AdditionalGids = []uint32{1000, 2000}
			one := []string{"CAP_NET_BIND_SERVICE"}
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: one, Effective: one, Permitted: one, Inheritable: one, Ambient: one}
		})
	out, errOut, st := run(t, rt, "nnp", dir)
	if st.Code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", st.Code, errOut)
	}
	f := facts(out)
	const netBind = "0000000000000400" // CAP_NET_BIND_SERVICE = 10
	for k, v := range map[string]string{
		"NoNewPrivs": "0", "Seccomp": "2", "uid": "1000 gid=1000 groups=1000 2000",
		"CapInh": netBind, "CapPrm": netBind, "CapEff": netBind, "CapBnd": netBind, "CapAmb": netBind,
	} {
		if f[k] != v {
			t.Errorf("%s = %q, want %q\n%s", k, f[k], v, out)
		}
	}
}

// TestJoinNamespaces joins namespaces by path: a network namespace made outside (as the agent
// does) and another container's network and uts namespaces (as `--network container:<name>`).
func TestJoinNamespaces(t *testing.T) {
	rt := newRuntime(t)
	ns := testutil.Netns(t, "ovrtj")
	link := testutil.UniqueName("dj")
	testutil.Run(t, "ip", "-n", ns, "link", "add", link, "type", "veth", "peer", "name", link+"p")
	show := []string{"sh", "-c", "echo links=$(ls /sys/class/net | tr '\\n' ' '); echo hostname=$(hostname)"}

	out, errOut, st := run(t, rt, "joinnet", newBundle(t, spec.Options{ID: "joinnet", Hostname: "j1", Args: show, NetNSPath: "/run/netns/" + ns}, nil))
	if st.Code != 0 {
		t.Fatalf("exit %d: %s", st.Code, errOut)
	}
	if f := facts(out); !strings.Contains(" "+f["links"]+" ", " "+link+" ") || f["hostname"] != "j1" {
		t.Errorf("container in netns %s: %v; want the link %s and its own hostname j1", ns, f, link)
	}

	a := create(t, rt, "joina", newBundle(t, spec.Options{ID: "joina", Hostname: "hosta", Args: []string{"sleep", "1000"}}, nil), CreateOptions{})
	dir := newBundle(t, spec.Options{ID: "joinb", Hostname: "ignored", Args: show,
		NetNSPath: fmt.Sprintf("/proc/%d/ns/net", a.Pid())}, func(s *specs.Spec) {
		for i, n := range s.Linux.Namespaces {
			if n.Type == specs.UTSNamespace {
				s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/uts", a.Pid())
			}
		}
	})
	b := create(t, rt, "joinb", dir, CreateOptions{})
	for _, n := range []string{"net", "uts"} {
		la, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", a.Pid(), n))
		lb, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", b.Pid(), n))
		if la == "" || la != lb {
			t.Errorf("%s namespace: container b is in %q, want container a's %q", n, lb, la)
		}
	}
	for _, n := range []string{"pid", "mnt", "ipc"} {
		la, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", a.Pid(), n))
		lb, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", b.Pid(), n))
		if la == lb {
			t.Errorf("%s namespace shared between the containers, want one each", n)
		}
	}
}

// TestInterruptedCreate: a create that died half-way (its process killed) leaves a record without
// a pid; state says "creating" and delete --force removes what it made.
func TestInterruptedCreate(t *testing.T) {
	rt := newRuntime(t)
	id, cgPath := "halfway", "/ovrt-test/"+testutil.UniqueName("halfway")
	dir := filepath.Join(rt.cfg.Root, id)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := writeRecord(dir, &record{ID: id, CgroupPath: cgPath}); err != nil {
		t.Fatal(err)
	}
	cg, err := cgroup.New(cgroup.Config{Path: cgPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cg.Delete() })
	c, err := rt.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.State(); s.Status != specs.StateCreating || s.Pid != 0 {
		t.Errorf("state %+v, want creating without pid", s)
	}
	if err := c.Delete(false); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("delete without force: %v, want ErrConflict", err)
	}
	if err := c.Delete(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left: %v", err)
	}
	if _, err := cgroup.Load(cgPath); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("cgroup left: %v", err)
	}
}
