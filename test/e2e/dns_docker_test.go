package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/testutil"
)

// dockerd is a Docker daemon the benchmark starts for its reference row: its own data and exec roots
// under the test's directory, its own socket, and a network namespace of its own so that its bridge
// and whatever it does to iptables stay out of the machine's (it runs with --iptables=false anyway);
// it is stopped, and what it left is removed, when the test ends.
// dockerCgroup is the cgroup, in every hierarchy, under which the benchmark's dockerd puts its
// containers (its own: removed with it).
const dockerCgroup = "ovbench-docker"

type dockerd struct {
	bin, client, dir, sock string
	netns                  string // the namespace it runs in (set by start)
	cmd                    *exec.Cmd
}

func (d *dockerd) docker(args ...string) (string, error) {
	out, err := exec.Command(d.client, append([]string{"-H", "unix://" + d.sock}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// benchDocker measures Docker's embedded DNS as dnsperfIn measures ov's: a user-defined bridge network,
// containers target and asker from the same busybox rootfs, dnsperf in asker's network namespace.
func benchDocker(t *testing.T, qfile string, secs int) perfRun {
	t.Helper()
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		return perfRun{Err: "dockerd is not installed on this machine (Debian package docker.io; make deps does not install it)."}
	}
	client := "/usr/bin/docker" // docker.io's own client, of the daemon's version
	if _, err := os.Stat(client); err != nil {
		if client, err = exec.LookPath("docker"); err != nil {
			return perfRun{Err: "dockerd is installed but no docker client is."}
		}
	}
	d := &dockerd{bin: bin, client: client, dir: filepath.Join(tmpDir, "docker")}
	d.sock = filepath.Join(d.dir, "docker.sock")
	if err := d.start(t); err != nil {
		return perfRun{Err: err.Error()}
	}
	steps := [][]string{
		{"import", image, "ovbench-busybox"},
		{"network", "create", "--subnet", "10.87.0.0/24", "benchnet"},
		{"run", "-d", "--name", "target", "--network", "benchnet", "ovbench-busybox", "sleep", "100000"},
		{"run", "-d", "--name", "asker", "--network", "benchnet", "ovbench-busybox", "sleep", "100000"},
	}
	for _, s := range steps {
		if _, err := d.docker(s...); err != nil {
			return perfRun{Err: err.Error()}
		}
	}
	pid, err := d.docker("inspect", "-f", "{{.State.Pid}}", "asker")
	if err != nil {
		return perfRun{Err: err.Error()}
	}
	ip, err := d.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "target")
	if err != nil {
		return perfRun{Err: err.Error()}
	}
	asker := container{Name: "asker", Host: "docker", NetNS: "/proc/" + pid + "/ns/net"}
	if err := expectA(asker, "target", ip); err != nil {
		return perfRun{Err: "Docker's embedded DNS does not answer: " + err.Error()}
	}
	return dnsperfIn(asker.NetNS, d.cmd.Process.Pid, qfile, secs)
}

// start runs dockerd and waits until it answers; the test's cleanup stops it.
func (d *dockerd) start(t *testing.T) error {
	t.Helper()
	ns := testutil.Netns(t, "ovdock")
	d.netns = ns
	for _, sub := range []string{"root", "exec"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(d.dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(d.dir, "dockerd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	// nsenter with only --net execs dockerd in place: the pid is dockerd's
	d.cmd = exec.Command("nsenter", "--net=/run/netns/"+ns, d.bin,
		"--data-root", filepath.Join(d.dir, "root"), "--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "dockerd.pid"), "--config-file", filepath.Join(d.dir, "daemon.json"),
		"-H", "unix://"+d.sock, "--iptables=false", "--ip-masq=false", "--bridge=none",
		"--userland-proxy=false", "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", "/"+dockerCgroup,
		"--log-level", "warn")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.docker("version"); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
			return fmt.Errorf("dockerd did not answer within 60 s: %v\n%s", err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop removes the containers and the network, stops dockerd (SIGTERM, SIGKILL after 30 s), kills
// whatever of it remains (containerd, shims), unmounts what it left under its directory and removes it.
func (d *dockerd) stop(t *testing.T) {
	for _, s := range [][]string{{"rm", "-f", "target", "asker"}, {"network", "rm", "benchnet"}} {
		_, _ = d.docker(s...)
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Logf("dockerd did not stop within 30 s of SIGTERM; killing it")
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	killUnder(t, d.dir)
	unmountUnder(t, d.dir)
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/" + dockerCgroup)
	for _, cg := range append(cgs, "/sys/fs/cgroup/"+dockerCgroup) {
		if err := os.Remove(cg); err != nil && !os.IsNotExist(err) {
			t.Logf("remove dockerd's cgroup %s: %v", cg, err)
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Logf("remove %s: %v", d.dir, err)
	}
}

// killUnder kills every process whose command line names dir (dockerd's containerd and shims).
func killUnder(t *testing.T, dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
		t.Logf("killing pid %d left by dockerd: %s", pid, strings.ReplaceAll(string(b), "\x00", " "))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// unmountUnder unmounts, deepest first, every mount point under dir.
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			points = append(points, f[4])
		}
	}
	f.Close()
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", points[i], err)
		}
	}
}
