package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
)

var (
	binDir  string // ov's binaries, built once
	tmpDir  string // everything the package makes on disk
	image   string // busybox rootfs tarball
	labOnce sync.Once
	theLab  *lab.Lab
	labErr  error
	labs    []*lab.Lab // every lab started, taken down at the end
	labsMu  sync.Mutex
	ids     = map[string]bool{} // every container ID the tests saw, checked by teardown
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 || testutil.Unit() {
			if testutil.Strict() {
				fmt.Printf("STRICT (%s=1): test/e2e would skip: it needs root (CI runs it as root): run sudo make test\n", testutil.StrictEnv)
				return 1
			}
			fmt.Println("SKIPPED: test/e2e needs root (CI runs it as root): run sudo make test")
			return m.Run() // every test skips through testutil.RequireRoot
		}
		var err error
		if tmpDir, err = os.MkdirTemp("", "ove2e"); err != nil {
			fmt.Println(err)
			return 1
		}
		defer os.RemoveAll(tmpDir)
		if err := build(); err != nil {
			fmt.Println(err)
			return 1
		}
		code := m.Run()
		labsMu.Lock()
		defer labsMu.Unlock()
		if code != 0 {
			keepLogs(labs)
		}
		// Teardown and the leaves-nothing check run here, after every test, whichever tests ran.
		if left := teardown(labs, ids); len(left) > 0 {
			fmt.Println("e2e teardown: FAIL: ov left things behind after taking every lab down:")
			for _, l := range left {
				fmt.Println("  " + l)
			}
			code = 1
		} else {
			fmt.Printf("e2e teardown: %d lab(s) down; no namespace, link, mount, process, cgroup or directory of ov left\n", len(labs))
		}
		labs = nil
		return code
	}()
	os.Exit(code)
}

// keepLogs copies the labs' controller and agent logs to /tmp/ov-e2e-logs, for a failed run.
func keepLogs(ls []*lab.Lab) {
	dst := "/tmp/ov-e2e-logs"
	_ = os.RemoveAll(dst)
	for _, l := range ls {
		logs, _ := filepath.Glob(filepath.Join(l.Config.Dir, "*.log"))
		more, _ := filepath.Glob(filepath.Join(l.Config.Dir, "*", "*.log"))
		for _, f := range append(logs, more...) {
			rel, _ := filepath.Rel(l.Config.Dir, f)
			out := filepath.Join(dst, l.Config.Prefix, strings.ReplaceAll(rel, "/", "-"))
			if b, err := os.ReadFile(f); err == nil && os.MkdirAll(filepath.Dir(out), 0o755) == nil {
				_ = os.WriteFile(out, b, 0o644)
			}
		}
	}
	fmt.Println("e2e: the labs' logs are kept in", dst)
}

// build compiles ov's binaries and a busybox image for the lab.
func build() error {
	binDir = filepath.Join(tmpDir, "bin")
	for _, c := range []string{"ovagent", "ovcontroller", "ovctl", "ovrt", "ovinit"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, c), "github.com/ovnet/ov/cmd/"+c).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build %s: %v\n%s", c, err, out)
		}
	}
	root := filepath.Join(tmpDir, "rootfs")
	if err := testutil.MakeBusyboxRootfs(root); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "var/www/index.html"), []byte("hello from ov\n"), 0o644); err != nil {
		return err
	}
	image = filepath.Join(tmpDir, "busybox.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", image, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("tar: %v: %s", err, out)
	}
	return nil
}

// startLab starts a lab with the given prefix, subnet, MTU and hosts, imports busybox on every host,
// and registers it for teardown.
func startLab(t *testing.T, prefix, subnet string, mtu, hosts int) *lab.Lab {
	t.Helper()
	testutil.RequireRoot(t)
	l, err := tryStartLab(prefix, subnet, mtu, hosts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func tryStartLab(prefix, subnet string, mtu, hosts int) (*lab.Lab, error) {
	cfg := lab.DefaultConfig()
	cfg.Prefix = prefix
	cfg.Subnet = netip.MustParsePrefix(subnet)
	cfg.MTU = mtu
	cfg.Hosts = hosts
	cfg.Dir = filepath.Join(tmpDir, prefix)
	cfg.Bin = binDir
	cfg.ControllerPort = 7480
	cfg.AgentArgs = []string{"--overlay-resync", "2s", "--log-level", "debug"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("start lab %s: %w", prefix, err)
	}
	labsMu.Lock()
	labs = append(labs, l)
	labsMu.Unlock()
	for _, h := range l.Hosts {
		if _, err := ctlOut(l, h.Name, "image", "import", image, "busybox"); err != nil {
			return nil, fmt.Errorf("import busybox on %s: %w", h.Name, err)
		}
	}
	return l, nil
}

// sharedLab is the 3-host lab most tests use.
func sharedLab(t *testing.T) *lab.Lab {
	t.Helper()
	testutil.RequireRoot(t)
	labOnce.Do(func() {
		theLab, labErr = tryStartLab("ove2e", "192.168.79.0/24", 1500, 3)
	})
	if labErr != nil {
		t.Fatal(labErr)
	}
	return theLab
}

// ctlOut runs ovctl on a host of the lab and returns its standard output; the error carries stderr.
func ctlOut(l *lab.Lab, host string, args ...string) (string, error) {
	return l.CtlOutput(context.Background(), host, args...)
}

func ctl(t *testing.T, l *lab.Lab, host string, args ...string) string {
	t.Helper()
	out, err := ctlOut(l, host, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// container is a container started by a test.
type container struct {
	Host, Name, ID, IP, NetNS string
}

// inspect reads a container's record from its host's agent.
func inspect(t *testing.T, l *lab.Lab, host, name string) api.Container {
	t.Helper()
	out := ctl(t, l, host, "inspect", name)
	var cs []api.Container
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		var c api.Container
		if err2 := json.Unmarshal([]byte(out), &c); err2 != nil {
			t.Fatalf("inspect %s: %v\n%s", name, err, out)
		}
		return c
	}
	if len(cs) != 1 {
		t.Fatalf("inspect %s: %d records", name, len(cs))
	}
	labsMu.Lock()
	ids[cs[0].ID] = true
	labsMu.Unlock()
	return cs[0]
}

// runOn starts a detached busybox container on host, removed when the test ends.
func runOn(t *testing.T, l *lab.Lab, host, name, network string, cmd ...string) container {
	t.Helper()
	return runWith(t, l, host, name, network, nil, "busybox", cmd...)
}

// runWith starts a detached container with extra `ovctl run` flags, removed when the test ends; it
// has an address on network unless that is none or host.
func runWith(t *testing.T, l *lab.Lab, host, name, network string, flags []string, img string, cmd ...string) container {
	t.Helper()
	args := append([]string{"run", "-d", "--name", name, "--network", network}, flags...)
	args = append(append(args, img), cmd...)
	ctl(t, l, host, args...)
	t.Cleanup(func() { _, _ = ctlOut(l, host, "rm", "-f", name) })
	c := inspect(t, l, host, name)
	ct := container{Host: host, Name: name, ID: c.ID, NetNS: c.NetNS}
	for _, ep := range c.Networks {
		if ep.Network == network {
			ct.IP = ep.IP
		}
	}
	if ct.IP == "" && network != "none" && network != "host" {
		t.Fatalf("container %s on %s has no address on %s: %+v", name, host, network, c.Networks)
	}
	return ct
}

// execIn runs a command in a container through ovctl exec.
func execIn(l *lab.Lab, c container, cmd ...string) (string, error) {
	return ctlOut(l, c.Host, append([]string{"exec", c.Name}, cmd...)...)
}

// ping sends one ping from container c to ip.
func ping(l *lab.Lab, c container, ip string) error {
	out, err := execIn(l, c, "ping", "-c", "1", "-W", "2", ip)
	if err != nil {
		return fmt.Errorf("%s on %s cannot ping %s: %v\n%s", c.Name, c.Host, ip, err, out)
	}
	return nil
}

// networkOn creates an overlay network through host1, deleted when the test ends.
func networkOn(t *testing.T, l *lab.Lab, name string, extra ...string) {
	t.Helper()
	ctl(t, l, "host1", append(append([]string{"network", "create", "-d", "overlay"}, extra...), name)...)
	t.Cleanup(func() { _, _ = ctlOut(l, "host1", "network", "rm", name) })
}
