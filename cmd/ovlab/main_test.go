package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
)

// These tests drive the real ovlab binary, one invocation per command, as an operator would: the
// commands work only if lab.json carries what each needs from one invocation to the next. Each test
// builds its own lab (own prefix, subnet and directory) and takes it down even when it fails.

var binDir string // ovlab and ov's binaries, built once by TestMain when running as root

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 || testutil.Unit() {
			return m.Run() // the privileged tests skip loudly through testutil.RequireRoot (fail under OV_STRICT)
		}
		tmp, err := os.MkdirTemp("", "ovlabtest")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer os.RemoveAll(tmp)
		binDir = filepath.Join(tmp, "bin")
		for _, c := range []string{"ovlab", "ovagent", "ovcontroller", "ovctl", "ovrt"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, c), "github.com/ovnet/ov/cmd/"+c).CombinedOutput()
			if err != nil {
				fmt.Printf("go build %s: %v\n%s", c, err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// cli runs ovlab commands against one lab directory.
type cli struct {
	t   *testing.T
	dir string
}

// run runs `ovlab --dir DIR args...` and returns its combined output.
func (c cli) run(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(binDir, "ovlab"), append([]string{"--dir", c.dir}, args...)...).CombinedOutput()
	return string(out), err
}

// must runs a command that must succeed.
func (c cli) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("ovlab %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fails runs a command that must fail with an error containing want.
func (c cli) fails(want string, args ...string) {
	c.t.Helper()
	out, err := c.run(args...)
	if err == nil || !strings.Contains(out, want) {
		c.t.Fatalf("ovlab %s = %v\n%s\nwant a failure saying %q", strings.Join(args, " "), err, out, want)
	}
}

// state reads the lab's state as the last command left it.
func (c cli) state() *lab.Lab {
	c.t.Helper()
	l, err := lab.Load(c.dir)
	if err != nil {
		c.t.Fatal(err)
	}
	return l
}

// up starts a lab with ovlab up and takes it down when the test ends (through the library if the
// command fails).
func up(t *testing.T, prefix, subnet string, args ...string) cli {
	t.Helper()
	testutil.RequireRoot(t)
	c := cli{t: t, dir: filepath.Join(t.TempDir(), "lab")}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(c.dir, "lab.json")); os.IsNotExist(err) {
			return // the test took it down itself
		}
		if out, err := c.run("down"); err != nil {
			t.Errorf("ovlab down: %v\n%s", err, out)
			if l, err := lab.Load(c.dir); err == nil {
				_ = l.Down(t.Context())
			}
		}
	})
	c.must(append([]string{"up", "--prefix", prefix, "--subnet", subnet, "--bin", binDir}, args...)...)
	return c
}

// running reports whether pid is a live process (not gone, not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil || pid <= 0 {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// cmdline is the command line of pid, arguments joined by spaces.
func cmdline(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// restarted checks that a process killed at oldPID is gone and that a new one runs with the same
// command line.
func restarted(t *testing.T, what string, oldPID, newPID int, oldCmd string) {
	t.Helper()
	if newPID == oldPID || !running(newPID) {
		t.Fatalf("%s: pid %d after the start (was %d): not a new running process", what, newPID, oldPID)
	}
	if got := cmdline(t, newPID); got != oldCmd {
		t.Fatalf("%s started with another command line:\n got  %s\n want %s", what, got, oldCmd)
	}
}

// TestFaultsEmbedded: on a lab with the embedded etcd, kill and start the agent and the controller,
// partition and heal a host, and the errors of commands that cannot be done.
func TestFaultsEmbedded(t *testing.T) {
	c := up(t, "ovlf", "192.168.93.0/24", "--hosts", "2")
	l := c.state()
	h2 := l.Hosts[1]

	t.Run("kill and start agent", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "rootfs")
		testutil.BusyboxRootfs(t, root)
		image := filepath.Join(t.TempDir(), "busybox.tar")
		testutil.Run(t, "tar", "-C", root, "-cf", image, ".")
		c.must("ctl", "host1", "--", "image", "import", image, "busybox")
		c.must("ctl", "host1", "--", "run", "-d", "--name", "keep", "--network", "none", "busybox", "sleep", "100000")
		ctrPID := containerPID(t, c.must("ctl", "host1", "--", "inspect", "keep"))
		old := c.state().Hosts[0].Agent.PID
		oldCmd := cmdline(t, old)

		c.must("kill", "agent", "host1")
		if running(old) {
			t.Fatalf("agent of host1 (pid %d) still runs after ovlab kill agent", old)
		}
		if !running(ctrPID) {
			t.Fatalf("container keep (pid %d) died with its agent: kill must leave containers running", ctrPID)
		}
		if s := c.must("status"); !regexp.MustCompile(`agent host1\s+stopped`).MatchString(s) {
			t.Fatalf("status does not show host1's agent stopped:\n%s", s)
		}
		c.fails("not running", "kill", "agent", "host1")

		c.must("start", "agent", "host1")
		restarted(t, "agent of host1", old, c.state().Hosts[0].Agent.PID, oldCmd)
		c.fails("already running", "start", "agent", "host1")
		if ps := c.must("ctl", "host1", "--", "ps"); !strings.Contains(ps, "keep") || !strings.Contains(ps, "Up") || !running(ctrPID) {
			t.Fatalf("after the agent's restart, container keep (pid %d) is not running:\n%s", ctrPID, ps)
		}
		c.must("ctl", "host1", "--", "rm", "-f", "keep")
	})

	t.Run("partition and heal", func(t *testing.T) {
		ping := func(from string, to string) error {
			out, err := c.run("exec", from, "--", "/bin/busybox", "ping", "-c", "1", "-W", "1", to)
			if err != nil {
				return fmt.Errorf("%s cannot ping %s: %v\n%s", from, to, err, out)
			}
			return nil
		}
		if err := ping("host1", h2.Addr); err != nil {
			t.Fatal(err)
		}
		rootRules := iptablesSave(t, "")
		agent := c.state().Hosts[1].Agent.PID

		c.must("partition", "host2")
		if err := ping("host1", h2.Addr); err == nil {
			t.Fatal("host1 still pings host2 after ovlab partition host2")
		}
		if err := ping("host2", l.Config.Subnet.Addr().Next().String()); err == nil {
			t.Fatal("host2 still reaches the underlay gateway after ovlab partition host2")
		}
		if err := ping("host1", l.Config.Subnet.Addr().Next().String()); err != nil {
			t.Fatalf("partitioning host2 cut host1 off too: %v", err)
		}
		if !strings.Contains(iptablesSave(t, h2.Netns), "ovlab partition") {
			t.Fatal("no partition rule in host2's namespace")
		}
		if got := iptablesSave(t, ""); got != rootRules {
			t.Fatalf("ovlab partition changed the machine's own iptables:\nbefore:\n%s\nafter:\n%s", rootRules, got)
		}
		if !running(agent) {
			t.Fatal("partition killed host2's agent; it must only cut the network")
		}
		if s := c.must("status"); !strings.Contains(s, "PARTITIONED") {
			t.Fatalf("status does not show host2 partitioned:\n%s", s)
		}
		c.fails("already partitioned", "partition", "host2")

		c.must("heal", "host2")
		testutil.Eventually(t, 5*time.Second, func() error { return ping("host1", h2.Addr) })
		if strings.Contains(iptablesSave(t, h2.Netns), "ovlab partition") {
			t.Fatal("heal left a partition rule in host2's namespace")
		}
		c.fails("not partitioned", "heal", "host2")
		c.fails(`no host "host9"`, "partition", "host9")
	})

	t.Run("kill and start controller", func(t *testing.T) {
		health := func() error {
			out, err := c.run("exec", "host1", "--", "/bin/busybox", "wget", "-q", "-O", "-", l.ControllerURL+"/v1/health")
			if err != nil {
				return fmt.Errorf("controller health: %v: %s", err, out)
			}
			return nil
		}
		if err := health(); err != nil {
			t.Fatal(err)
		}
		old := c.state().Controller.PID
		oldCmd := cmdline(t, old)
		c.must("kill", "controller")
		if running(old) {
			t.Fatalf("controller (pid %d) still runs after ovlab kill controller", old)
		}
		if health() == nil {
			t.Fatal("the controller still answers after ovlab kill controller")
		}
		c.fails("not running", "kill", "controller")
		c.must("start", "controller")
		restarted(t, "controller", old, c.state().Controller.PID, oldCmd)
		if err := health(); err != nil {
			t.Fatal(err)
		}
		// the same tokens: the admin token ovlab ctl passes and the agents' host tokens still work
		testutil.Eventually(t, 20*time.Second, func() error {
			out, err := c.run("ctl", "host1", "--", "node", "ls")
			if err != nil || strings.Count(out, "alive") != 2 {
				return fmt.Errorf("node ls after the controller's restart: %v\n%s", err, out)
			}
			return nil
		})
		c.fails("already running", "start", "controller")
	})

	t.Run("errors", func(t *testing.T) {
		c.fails("this lab runs an embedded etcd inside the controller; start it with --etcd external", "kill", "etcd", "1")
		c.fails("this lab runs an embedded etcd inside the controller; start it with --etcd external", "start", "etcd", "1")
		c.fails(`no host "host3"`, "kill", "agent", "host3")
		c.fails(`no host "nohost"`, "start", "agent", "nohost")
		c.fails("accepts 1 arg", "kill", "agent")
	})
}

// containerPID reads the pid of the container's init process from ovctl inspect's output (one record,
// or a list of one).
func containerPID(t *testing.T, out string) int {
	t.Helper()
	var recs []api.Container
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		var rec api.Container
		if err := json.Unmarshal([]byte(out), &rec); err != nil {
			t.Fatalf("inspect: %v\n%s", err, out)
		}
		recs = []api.Container{rec}
	}
	if len(recs) != 1 || recs[0].State.Pid == 0 {
		t.Fatalf("inspect: want one running container:\n%s", out)
	}
	return recs[0].State.Pid
}

// iptablesSave returns the rules of network namespace ns ("": the machine's own), without counters.
func iptablesSave(t *testing.T, ns string) string {
	t.Helper()
	var out []byte
	var err error
	if ns == "" {
		out, err = exec.Command("iptables-save").Output()
	} else {
		out, err = exec.Command("nsenter", "--net=/run/netns/"+ns, "iptables-save").Output()
	}
	if err != nil {
		t.Fatalf("iptables-save %s: %v", ns, err)
	}
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		keep = append(keep, regexp.MustCompile(`\[\d+:\d+\]`).ReplaceAllString(line, ""))
	}
	return strings.Join(keep, "\n")
}

// TestFaultsExternalEtcd: a lab with a 3-member external etcd; a killed member is gone, the cluster
// keeps serving writes through the controller, the member starts again on its data and rejoins (the
// cluster serves writes with it as part of the quorum), and down leaves nothing.
func TestFaultsExternalEtcd(t *testing.T) {
	c := up(t, "ovle", "192.168.94.0/24", "--hosts", "1", "--etcd", "external", "--etcd-members", "3")
	l := c.state()
	if len(l.Etcd) != 3 {
		t.Fatalf("lab has %d etcd members, want 3", len(l.Etcd))
	}
	ctrl := cmdline(t, l.Controller.PID)
	for _, m := range l.Etcd {
		if !running(m.Proc.PID) || !strings.HasPrefix(cmdline(t, m.Proc.PID), "/usr/bin/etcd ") {
			t.Fatalf("etcd member %s is not running /usr/bin/etcd (pid %d)", m.Name, m.Proc.PID)
		}
		if !strings.HasPrefix(m.Dir, c.dir+"/") {
			t.Fatalf("etcd member %s keeps its data in %s, outside the lab's directory %s", m.Name, m.Dir, c.dir)
		}
		if !strings.Contains(ctrl, m.ClientURL) {
			t.Fatalf("the controller does not use etcd member %s (%s):\n%s", m.Name, m.ClientURL, ctrl)
		}
	}
	if s := c.must("status"); len(regexp.MustCompile(`etcd \d\s+running\s+\d+`).FindAllString(s, -1)) != 3 {
		t.Fatalf("status does not show 3 running etcd members with pids:\n%s", s)
	}
	write := func(name, subnet string) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, func() error {
			out, err := c.run("ctl", "host1", "--", "network", "create", "-d", "overlay", "--subnet", subnet, name)
			if err != nil && !strings.Contains(out, "exists") {
				return fmt.Errorf("network create %s through the controller: %v\n%s", name, err, out)
			}
			return nil
		})
	}

	old := l.Etcd[1].Proc.PID
	oldCmd := cmdline(t, old)
	c.must("kill", "etcd", "2")
	if running(old) {
		t.Fatalf("etcd member 2 (pid %d) still runs after ovlab kill etcd 2", old)
	}
	c.fails("not running", "kill", "etcd", "2")
	write("e1", "10.97.1.0/24") // 2 of 3 members: a quorum
	c.must("start", "etcd", "2")
	restarted(t, "etcd member 2", old, c.state().Etcd[1].Proc.PID, oldCmd)
	c.fails("already running", "start", "etcd", "2")

	// With member 1 down, member 2 is needed for a quorum: the write shows it rejoined the cluster.
	c.must("kill", "etcd", "1")
	write("e2", "10.97.2.0/24")
	c.must("start", "etcd", "1")
	out := c.must("ctl", "host1", "--", "network", "ls")
	if !strings.Contains(out, "e1") || !strings.Contains(out, "e2") {
		t.Fatalf("network ls does not show both networks written across the members' restarts:\n%s", out)
	}

	c.fails("members 1 to 3", "kill", "etcd", "4")
	c.fails("members 1 to 3", "start", "etcd", "0")
	c.fails("give the member's number", "kill", "etcd", "one")

	pids := []int{c.state().Controller.PID}
	for _, m := range c.state().Etcd {
		pids = append(pids, m.Proc.PID)
	}
	c.must("down")
	for _, pid := range pids {
		if running(pid) {
			t.Errorf("pid %d (%s) still runs after ovlab down", pid, cmdline(t, pid))
		}
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("ovlab down left %s (etcd data included)", c.dir)
	}
}

// TestUpFlags: the etcd flags of ovlab up are checked before anything is made.
func TestUpFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown etcd mode", []string{"--etcd", "cluster"}, "use embedded"},
		{"members without external", []string{"--etcd-members", "5"}, "add --etcd external"},
		{"no members", []string{"--etcd", "external", "--etcd-members", "0"}, "at least 1 member"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "lab")
			root := newRoot()
			root.SetArgs(append([]string{"--dir", dir, "up"}, tc.args...))
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ovlab up %s = %v, want an error saying %q", strings.Join(tc.args, " "), err, tc.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("ovlab up with bad flags made %s", dir)
			}
		})
	}
}
