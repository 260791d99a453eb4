package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/ovrt"
	"github.com/ovnet/ov/internal/testutil"
)

// ovrtBin is the ovrt binary built for these tests.
var ovrtBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ovrt-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ovrtBin = filepath.Join(dir, "ovrt")
	if out, err := exec.Command("go", "build", "-o", ovrtBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ovrt: %v\n%s", err, out)
		return 1
	}
	// Inits outlive `ovrt create`; as a subreaper this test process inherits and reaps them, like
	// a shim does.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// env is one test's state directory and bundle.
type env struct {
	t      *testing.T
	root   string
	bundle string
}

// newEnv writes a bundle (busybox rootfs, `ovrt spec` config with args) for the container id.
func newEnv(t *testing.T, id string, args []string, edit func(*specs.Spec)) *env {
	t.Helper()
	testutil.RequireRoot(t)
	e := &env{t: t, root: t.TempDir(), bundle: t.TempDir()}
	testutil.BusyboxRootfs(t, filepath.Join(e.bundle, "rootfs"))
	if out, code := e.ovrt(nil, "spec", "--bundle", e.bundle, "--id", id); code != 0 {
		t.Fatalf("ovrt spec: %s", out)
	}
	path := filepath.Join(e.bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	s.Process.Args = args
	if edit != nil {
		edit(&s)
	}
	if b, err = json.Marshal(&s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ovrt(nil, "delete", "--force", id) })
	return e
}

// ovrt runs the binary with --root and returns its combined output and exit code.
func (e *env) ovrt(stdin io.Reader, args ...string) (string, int) {
	cmd := exec.Command(ovrtBin, append([]string{"--root", e.root}, args...)...)
	cmd.Dir = e.bundle
	cmd.Stdin = stdin
	// A file, not a pipe: a container created by this command inherits its stdio and would hold a
	// pipe open long after ovrt exits.
	f, err := os.CreateTemp(e.t.TempDir(), "out")
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, rerr := os.ReadFile(f.Name())
	if rerr != nil {
		e.t.Fatal(rerr)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return string(out), 0
}

func (e *env) must(args ...string) string {
	e.t.Helper()
	out, code := e.ovrt(nil, args...)
	if code != 0 {
		e.t.Fatalf("ovrt %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	return out
}

func (e *env) state(id string) ovrt.State {
	e.t.Helper()
	var s ovrt.State
	if err := json.Unmarshal([]byte(e.must("state", id)), &s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// reap waits for an orphaned init (now our child) and returns its wait status.
func reap(pid int) <-chan syscall.WaitStatus {
	ch := make(chan syscall.WaitStatus, 1)
	go func() {
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(pid, &ws, 0, nil)
			if err != syscall.EINTR {
				break
			}
		}
		ch <- ws
	}()
	return ch
}

func TestOCILifecycle(t *testing.T) {
	id := testutil.UniqueName("life")
	e := newEnv(t, id, []string{"sh", "-c", "echo started; exec sleep 1000"}, nil)
	out := filepath.Join(t.TempDir(), "out")
	pidFile := filepath.Join(t.TempDir(), "pid")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ovrtBin, "--root", e.root, "create", "--bundle", e.bundle, "--pid-file", pidFile, id)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out)
		t.Fatalf("create: %v: %s", err, b)
	}
	f.Close()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	exited := reap(pid)
	if s := e.state(id); s.Status != specs.StateCreated || s.Pid != pid || s.Bundle != e.bundle || s.Version == "" {
		t.Fatalf("after create: %+v; want created, pid %d, bundle %s", s, pid, e.bundle)
	}
	if b, _ := os.ReadFile(out); len(b) != 0 {
		t.Errorf("the process ran before start: %q", b)
	}
	e.must("start", id)
	if s := e.state(id); s.Status != specs.StateRunning {
		t.Fatalf("after start: %s, want running", s.Status)
	}
	if msg, code := e.ovrt(nil, "start", id); code == 0 || !strings.Contains(msg, "not created") {
		t.Errorf("second start: exit %d %q; want a failure saying the container is not created", code, msg)
	}
	if msg, code := e.ovrt(nil, "delete", id); code == 0 || !strings.Contains(msg, "running") {
		t.Errorf("delete of a running container: exit %d %q; want a refusal naming it running", code, msg)
	}
	if list := e.must("list", "-q"); strings.TrimSpace(list) != id {
		t.Errorf("list -q = %q, want %q", list, id)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if b, _ := os.ReadFile(out); string(b) != "started\n" {
			return fmt.Errorf("container output %q, want %q (stdout passed through)", b, "started\n")
		}
		return nil
	})
	e.must("kill", id, "KILL")
	if ws := <-exited; !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("init ended with %v, want killed by SIGKILL", ws)
	}
	if s := e.state(id); s.Status != specs.StateStopped || s.Pid != 0 {
		t.Errorf("after kill: %+v, want stopped without pid", s)
	}
	e.must("delete", id)
	if msg, code := e.ovrt(nil, "state", id); code == 0 || !strings.Contains(msg, "does not exist") {
		t.Errorf("state after delete: exit %d %q; want 'does not exist'", code, msg)
	}
}

func TestRunStdioAndExitCodes(t *testing.T) {
	tests := []struct {
		name, script, stdin, stdout, stderr string
		code                                int
	}{
		{"echo stdin", `read x; echo "got $x"; echo oops >&2; exit 42`, "hello\n", "got hello\n", "oops\n", 42},
		{"success", `true`, "", "", "", 0},
		{"not found", `no-such-command`, "", "", "sh: no-such-command: not found\n", 127},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := testutil.UniqueName(fmt.Sprintf("run%d-", i))
			e := newEnv(t, id, []string{"sh", "-c", tt.script}, nil)
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(ovrtBin, "--root", e.root, "run", "--bundle", e.bundle, id)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(tt.stdin), &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || stdout.String() != tt.stdout || stderr.String() != tt.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
			}
			if list := e.must("list", "-q"); list != "" {
				t.Errorf("run left containers behind: %q", list)
			}
		})
	}
}

func TestRunExitCodeOfSignal(t *testing.T) {
	id := testutil.UniqueName("sig")
	e := newEnv(t, id, []string{"sleep", "1000"}, nil)
	cmd := exec.Command(ovrtBin, "--root", e.root, "run", "--bundle", e.bundle, id)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		out, code := e.ovrt(nil, "state", id)
		if code != 0 || !strings.Contains(out, `"running"`) {
			return fmt.Errorf("state: %s", out)
		}
		return nil
	})
	e.must("kill", id, "9")
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+9 {
		t.Errorf("run ended with %v, want exit code 137 (128+SIGKILL)", err)
	}
}

func TestExec(t *testing.T) {
	id := testutil.UniqueName("exec")
	e := newEnv(t, id, []string{"sleep", "1000"}, func(s *specs.Spec) { s.Hostname = "exechost" })
	pidFile := filepath.Join(t.TempDir(), "pid")
	e.must("create", "--bundle", e.bundle, "--pid-file", pidFile, id)
	b, _ := os.ReadFile(pidFile)
	initPid, _ := strconv.Atoi(string(b))
	exited := reap(initPid)
	e.must("start", id)

	out, code := e.ovrt(strings.NewReader("in\n"), "exec", id, "sh", "-c", "read x; echo $(hostname) $x; exit 3")
	if code != 3 || out != "exechost in\n" {
		t.Errorf("exec: exit %d, output %q; want 3 and %q", code, out, "exechost in\n")
	}

	// As containerd's shim does it: --process file, --detach, --pid-file.
	proc := specs.Process{Args: []string{"sleep", "999"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	pb, _ := json.Marshal(proc)
	procFile := filepath.Join(t.TempDir(), "process.json")
	os.WriteFile(procFile, pb, 0o644)
	execPidFile := filepath.Join(t.TempDir(), "exec.pid")
	e.must("exec", "--process", procFile, "--detach", "--pid-file", execPidFile, id)
	b, err := os.ReadFile(execPidFile)
	if err != nil {
		t.Fatal(err)
	}
	execPid, _ := strconv.Atoi(string(b))
	// ovrt exec has exited: its orphan is ours to reap (a shim does the same), and the container's
	// pid namespace cannot finish dying until it is reaped.
	execExited := reap(execPid)
	for _, ns := range []string{"pid", "mnt", "net", "uts", "ipc", "cgroup"} {
		want, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", initPid, ns))
		got, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", execPid, ns))
		if got != want {
			t.Errorf("exec'd process is in %s namespace %s, want the container's %s", ns, got, want)
		}
	}
	var pids []int
	if err := json.Unmarshal([]byte(e.must("ps", "--format", "json", id)), &pids); err != nil {
		t.Fatal(err)
	}
	if !contains(pids, initPid) || !contains(pids, execPid) {
		t.Errorf("ps = %v, want the init %d and the exec'd %d", pids, initPid, execPid)
	}
	e.must("delete", "--force", id)
	<-exited
	if ws := <-execExited; !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("exec'd process ended with %v, want killed with its container", ws)
	}
}

// TestCgroupNamespace checks, with Docker's default spec (its cgroup namespace and "cgroup" mount),
// that the container's init and an exec'd process see their own cgroup as "/" in every hierarchy
// (v1 and cgroup2 lines of /proc/self/cgroup), and that /sys/fs/cgroup shows the container's own
// limits, while the host sees them in the container's cgroup.
func TestCgroupNamespace(t *testing.T) {
	id := testutil.UniqueName("cgns")
	e := newEnv(t, id, []string{"sleep", "1000"}, func(s *specs.Spec) {
		limit := int64(77)
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &limit}
	})
	pidFile := filepath.Join(t.TempDir(), "pid")
	e.must("create", "--bundle", e.bundle, "--pid-file", pidFile, id)
	b, _ := os.ReadFile(pidFile)
	initPid, _ := strconv.Atoi(string(b))
	exited := reap(initPid)
	defer func() { e.must("delete", "--force", id); <-exited }()
	e.must("start", id)

	cgPath := e.state(id).CgroupPath
	host, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", initPid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(host), ":"+cgPath+"\n") {
		t.Fatalf("the host sees the init in cgroups\n%s\nwant %s", host, cgPath)
	}
	script := `cat /proc/1/cgroup; echo ---; cat /proc/self/cgroup; echo ---; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max`
	out, code := e.ovrt(nil, "exec", id, "sh", "-c", script)
	parts := strings.Split(out, "---\n")
	if code != 0 || len(parts) != 3 {
		t.Fatalf("exec: exit %d: %s", code, out)
	}
	for i, who := range []string{"init", "exec'd process"} {
		lines := strings.Fields(parts[i])
		if len(lines) == 0 {
			t.Errorf("%s: empty /proc/self/cgroup", who)
		}
		for _, l := range lines {
			if !strings.HasSuffix(l, ":/") {
				t.Errorf("%s: cgroup line %q, want its own cgroup shown as / (a cgroup namespace rooted at %s)", who, l, cgPath)
			}
		}
	}
	if got := strings.TrimSpace(parts[2]); got != "77" {
		t.Errorf("pids.max under /sys/fs/cgroup in the container = %q, want the container's limit 77", got)
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// consoleSocket listens on a new console socket and returns its path and a channel that yields the
// pty master the runtime sends (nil when none came).
func consoleSocket(t *testing.T) (string, <-chan *os.File) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan *os.File, 1)
	go func() {
		defer close(got)
		conn, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer conn.Close()
		buf, oob := make([]byte, 64), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		if len(msgs) == 1 {
			if fds, _ := unix.ParseUnixRights(&msgs[0]); len(fds) == 1 {
				got <- os.NewFile(uintptr(fds[0]), "pty-master")
			}
		}
	}()
	return sock, got
}

// ignoringInt runs ovrt with SIGINT and SIGHUP ignored, as under the agent's shim (a daemon that
// must survive its terminal): the container's processes must not inherit that.
func (e *env) ignoringInt(args ...string) {
	e.t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", `trap "" INT HUP; exec "$0" "$@"`, ovrtBin, "--root", e.root}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("ovrt %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// withConsole runs ovrt (create, or exec --tty --detach) with a console socket and a pid file, and
// returns the pty master and a channel that yields the process's wait status.
func (e *env) withConsole(args ...string) (*os.File, <-chan syscall.WaitStatus) {
	t := e.t
	t.Helper()
	sock, got := consoleSocket(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	e.ignoringInt(append([]string{args[0], "--console-socket", sock, "--pid-file", pidFile}, args[1:]...)...)
	master := <-got
	if master == nil {
		t.Fatal("no pty master received on the console socket")
	}
	t.Cleanup(func() { master.Close() })
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(string(b))
	return master, reap(pid)
}

func TestConsoleSocket(t *testing.T) {
	id := testutil.UniqueName("tty")
	e := newEnv(t, id, []string{"sh", "-c", "tty; echo hi"}, func(s *specs.Spec) { s.Process.Terminal = true })
	master, exited := e.withConsole("create", "--bundle", e.bundle, id)
	e.must("start", id)
	<-exited
	out, _ := io.ReadAll(master) // ends with EIO once the last slave fd closed
	if !strings.Contains(string(out), "/dev/pts/0") || !strings.Contains(string(out), "hi") {
		t.Errorf("terminal output %q, want the tty name /dev/pts/0 and hi", out)
	}
}

// TestConsoleCtrlC types Ctrl-C on the terminal of a container's process (its init, and a process
// exec'd with --tty): the line discipline must send SIGINT to the foreground process, which needs
// the pty to be its controlling terminal with ISIG on, and SIGINT not ignored.
func TestConsoleCtrlC(t *testing.T) {
	script := `trap "echo GOT-INT; exit 7" INT; echo ready; while :; do sleep 1; done`
	for _, tc := range []string{"create", "exec"} {
		t.Run(tc, func(t *testing.T) {
			id := testutil.UniqueName("ctrlc")
			var master *os.File
			var exited <-chan syscall.WaitStatus
			if tc == "create" {
				e := newEnv(t, id, []string{"sh", "-c", script}, func(s *specs.Spec) { s.Process.Terminal = true })
				master, exited = e.withConsole("create", "--bundle", e.bundle, id)
				e.must("start", id)
			} else {
				e := newEnv(t, id, []string{"sleep", "1000"}, nil)
				e.must("run", "--bundle", e.bundle, "--detach", id)
				master, exited = e.withConsole("exec", "--tty", "--detach", id, "sh", "-c", script)
			}
			interrupt(t, master, exited)
		})
	}
}

// interrupt waits for the script to print ready on the terminal, types Ctrl-C and expects the
// script's INT trap to run.
func interrupt(t *testing.T, master *os.File, exited <-chan syscall.WaitStatus) {
	t.Helper()
	out := make(chan string, 1)
	ready := make(chan struct{})
	go func() {
		var buf bytes.Buffer
		b := make([]byte, 256)
		seen := false // the reader's own flag: setting ready to nil here raced with the select below,
		// which then waited on a nil channel for ever when "ready" came quickly (a CI run hung 20 minutes)
		for {
			n, err := master.Read(b)
			buf.Write(b[:n])
			if !seen && strings.Contains(buf.String(), "ready") {
				close(ready)
				seen = true
			}
			if err != nil { // EIO once the last slave fd closed
				out <- buf.String()
				return
			}
		}
	}()
	select {
	case <-ready:
	case ws := <-exited:
		t.Fatalf("the process exited (%v) before it was ready: %q", ws, <-out)
	}
	if _, err := master.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	var ws syscall.WaitStatus
	select {
	case ws = <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("Ctrl-C on the terminal did not interrupt the shell")
	}
	screen := <-out
	if !ws.Exited() || ws.ExitStatus() != 7 || !strings.Contains(screen, "GOT-INT") {
		t.Errorf("after Ctrl-C the process ended with %v and the terminal shows %q; want GOT-INT and exit 7", ws, screen)
	}
}

func TestGlobalFlags(t *testing.T) {
	testutil.RequireRoot(t)
	e := &env{t: t, root: t.TempDir(), bundle: t.TempDir()}
	if out, code := e.ovrt(nil, "--systemd-cgroup", "list"); code == 0 || !strings.Contains(out, "--systemd-cgroup is not supported") {
		t.Errorf("--systemd-cgroup: exit %d %q; want a clear refusal", code, out)
	}
	logFile := filepath.Join(t.TempDir(), "log.json")
	out, code := e.ovrt(nil, "--log", logFile, "--log-format", "json", "--debug", "state", "nosuch")
	if code == 0 || !strings.Contains(out, `container "nosuch" does not exist`) {
		t.Errorf("state of a missing container: exit %d %q", code, out)
	}
	b, _ := os.ReadFile(logFile)
	var entry map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(b), &entry); err != nil || entry["level"] != "ERROR" || !strings.Contains(fmt.Sprint(entry["msg"]), "does not exist") {
		t.Errorf("log file %q: want one JSON error entry naming the problem (%v)", b, err)
	}
}
