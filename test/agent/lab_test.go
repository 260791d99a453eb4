package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/testutil"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds ovagent, ovshim, ovctl and ovrt once per test process.
func binaries(t *testing.T) (agent, ctl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "ovbin")
		if buildErr != nil {
			return
		}
		for _, c := range []string{"ovagent", "ovshim", "ovctl", "ovrt", "ovinit"} {
			args := []string{"build", "-o", filepath.Join(binDir, c)}
			if os.Getenv("OV_TEST_RACE") != "" && c != "ovrt" && c != "ovinit" { // ovinit runs in images: static
				args = append(args, "-race") // OV_TEST_RACE=1: agent, shim and ovctl with the race detector
			}
			out, err := exec.Command("go", append(args, "github.com/ovnet/ov/cmd/"+c)...).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", c, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "ovagent"), filepath.Join(binDir, "ovctl")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// testRuntime is the OCI runtime the agent under test drives: OV_TEST_RUNTIME (a path, or "runc"),
// else ovrt built from this tree, the agent's default.
func testRuntime() string {
	switch r := os.Getenv("OV_TEST_RUNTIME"); r {
	case "":
		return filepath.Join(binDir, "ovrt")
	case "runc":
		return "/usr/sbin/runc"
	default:
		return r
	}
}

// lab is one agent under test, in its own network namespace and temporary directory.
type lab struct {
	t        *testing.T
	ns       string
	dir      string
	sock     string
	agentBin string
	ctlBin   string
	runtime  string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the agent process has exited
	mu       sync.Mutex
	ids      map[string]bool // every container ID the test made
	ips      map[string]bool // every container address the test saw
}

// newLab starts an agent in a fresh namespace with a busybox image imported as "busybox".
func newLab(t *testing.T) *lab {
	t.Helper()
	testutil.RequireRoot(t)
	binaries(t) // testRuntime names the ovrt it builds
	return newLabRuntime(t, testRuntime())
}

// newLabRuntime is newLab with the agent driving the OCI runtime binary rt.
func newLabRuntime(t *testing.T, rt string) *lab {
	t.Helper()
	testutil.RequireRoot(t)
	agentBin, ctlBin := binaries(t)
	ns := testutil.Netns(t, "ova")
	dir, err := os.MkdirTemp("", "ova")
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, ns: ns, dir: dir, sock: filepath.Join(dir, "run", "agent.sock"), agentBin: agentBin, ctlBin: ctlBin,
		runtime: rt, ids: map[string]bool{}, ips: map[string]bool{}}
	t.Cleanup(func() {
		l.cleanup()
		os.RemoveAll(dir)
	})
	l.start()
	rootfs := filepath.Join(dir, "rootfs")
	testutil.BusyboxRootfs(t, rootfs)
	tarball := filepath.Join(dir, "busybox.tar")
	testutil.Run(t, "tar", "-C", rootfs, "-cf", tarball, ".")
	l.must("image", "import", tarball, "busybox:latest")
	return l
}

func (l *lab) start() {
	l.t.Helper()
	logf, err := os.OpenFile(filepath.Join(l.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "--net=/run/netns/"+l.ns, l.agentBin,
		"--root", filepath.Join(l.dir, "lib"), "--run-dir", filepath.Join(l.dir, "run"),
		"--runtime", l.runtime, "--log-level", "debug", "--mtu", "1500")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.cmd = cmd
	exited := make(chan struct{})
	l.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	testutil.Eventually(l.t, 60*time.Second, func() error {
		select {
		case <-exited:
			l.t.Fatalf("the agent exited: %s", l.agentLog())
		default:
		}
		_, _, code := l.ctl("version")
		if code != 0 {
			return fmt.Errorf("agent not answering yet")
		}
		return nil
	})
}

func (l *lab) agentLog() string {
	b, _ := os.ReadFile(filepath.Join(l.dir, "agent.log"))
	return string(b)
}

// kill9 kills the agent with SIGKILL and reaps it.
func (l *lab) kill9() {
	_ = l.cmd.Process.Signal(syscall.SIGKILL)
	<-l.exited
}

// term stops the agent with SIGTERM (graceful: it stops serving, containers keep running) and
// waits for it to exit.
func (l *lab) term() {
	l.t.Helper()
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.exited:
	case <-time.After(30 * time.Second):
		l.t.Fatalf("the agent did not exit within 30s of SIGTERM")
	}
	if l.cmd.ProcessState.ExitCode() != 0 {
		l.t.Errorf("the agent exited %d after SIGTERM, want 0", l.cmd.ProcessState.ExitCode())
	}
}

// ctl runs ovctl with args and returns stdout, stderr and the exit code.
func (l *lab) ctl(args ...string) (string, string, int) {
	return l.ctlIn("", args...)
}

func (l *lab) ctlIn(stdin string, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.ctlBin, append([]string{"--socket", l.sock}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

// must runs ovctl and fails the test unless it exits 0.
func (l *lab) must(args ...string) string {
	l.t.Helper()
	out, errs, code := l.ctl(args...)
	if code != 0 {
		l.t.Fatalf("ovctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// runD starts a detached container and returns its ID.
func (l *lab) runD(args ...string) string {
	l.t.Helper()
	id := strings.TrimSpace(l.must(append([]string{"run", "-d"}, args...)...))
	if len(id) != 64 {
		l.t.Fatalf("run -d printed %q, want a 64-hex ID", id)
	}
	l.track(id)
	return id
}

func (l *lab) track(id string) {
	l.mu.Lock()
	l.ids[id] = true
	l.mu.Unlock()
}

func (l *lab) inspect(ref string) api.Container {
	l.t.Helper()
	var cs []api.Container
	if err := json.Unmarshal([]byte(l.must("inspect", ref)), &cs); err != nil || len(cs) != 1 {
		l.t.Fatalf("inspect %s: %v", ref, err)
	}
	for _, n := range cs[0].Networks {
		l.mu.Lock()
		l.ips[n.IP] = true
		l.mu.Unlock()
	}
	l.track(cs[0].ID)
	return cs[0]
}

// ip returns the container's address on its first network.
func (l *lab) ip(ref string) string {
	l.t.Helper()
	c := l.inspect(ref)
	if len(c.Networks) == 0 {
		l.t.Fatalf("container %s has no network", ref)
	}
	return c.Networks[0].IP
}

func (l *lab) ps(all bool) []api.Container {
	l.t.Helper()
	args := []string{"ps", "-o", "json"}
	if all {
		args = append(args, "-a")
	}
	var cs []api.Container
	if err := json.Unmarshal([]byte(l.must(args...)), &cs); err != nil {
		l.t.Fatal(err)
	}
	for _, c := range cs {
		l.track(c.ID)
	}
	return cs
}

// inNetns runs a command in the lab's namespace (the "host").
func (l *lab) inNetns(name string, args ...string) (string, error) {
	return testutil.InNetns(l.ns, name, args...)
}

// cleanup removes every container, stops the agent and checks that nothing of the containers is
// left: no mount under the lab's directory, no cgroup, no veth, no iptables rule naming their
// addresses. It removes what it finds so the machine stays clean even when the test failed.
func (l *lab) cleanup() {
	t := l.t
	running := false
	if l.exited != nil {
		select {
		case <-l.exited:
		default:
			running = true
		}
	}
	if running {
		if out, _, code := l.ctl("ps", "-a", "-q"); code == 0 {
			for _, id := range strings.Fields(out) {
				l.ctl("rm", "-f", id)
			}
		}
		_ = l.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-l.exited:
		case <-time.After(30 * time.Second):
			t.Errorf("the agent did not exit within 30s of SIGTERM")
			_ = l.cmd.Process.Kill()
			<-l.exited
		}
	}
	if strings.Contains(l.agentLog(), "DATA RACE") {
		t.Errorf("the race detector reported a data race in the agent (OV_TEST_RACE)")
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", l.agentLog())
	}
	var leaks []string
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var mps []string
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], l.dir) {
			mps = append(mps, f[4])
		}
	}
	for i := len(mps) - 1; i >= 0; i-- {
		if mps[i] != filepath.Join(l.dir, "run", "netns") { // the namespace directory itself is the agent's
			leaks = append(leaks, "mount "+mps[i])
		}
		_ = syscall.Unmount(mps[i], syscall.MNT_DETACH)
	}
	l.mu.Lock()
	ids := l.ids
	ips := l.ips
	l.mu.Unlock()
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/ov/*")
	cgs2, _ := filepath.Glob("/sys/fs/cgroup/ov/*")
	for _, cg := range append(cgs, cgs2...) {
		if ids[filepath.Base(cg)] {
			leaks = append(leaks, "cgroup "+cg)
			_ = os.Remove(cg)
		}
	}
	if out, err := l.inNetns("ip", "-o", "link", "show", "type", "veth"); err == nil && strings.TrimSpace(out) != "" {
		leaks = append(leaks, "veth: "+out)
	}
	if out, err := l.inNetns("iptables-save"); err == nil {
		for ip := range ips {
			if ip != "" && strings.Contains(out, ip+"/") || ip != "" && strings.Contains(out, ip+":") {
				leaks = append(leaks, "iptables rule naming "+ip)
			}
		}
	}
	for _, leak := range leaks {
		t.Errorf("left behind: %s", leak)
	}
}
