package lab

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CgroupParent is the cgroup under which the agent of host h puts its containers.
func (l *Lab) CgroupParent(h *Host) string { return "/" + l.Config.Prefix + "-" + h.Name }

// StartController starts ovcontroller in the underlay namespace, with the flags Up gave it (the same
// data directory, hence the same tokens, and the same etcd), and waits until it answers.
func (l *Lab) StartController(ctx context.Context) error {
	if err := os.MkdirAll(l.ControllerDir, 0o700); err != nil {
		return err
	}
	if err := l.startProc(ctx, "controller", &l.Controller, func() error {
		// (busybox 1.35 wget crashes with -T; a refused connection fails at once anyway)
		return l.inUnderlay("wget", "-q", "-O", "/dev/null", l.ControllerURL+"/v1/health")
	}); err != nil {
		return err
	}
	return l.readTokens()
}

// readTokens reads the tokens the controller generated into its data directory.
func (l *Lab) readTokens() error {
	for _, t := range []struct {
		file string
		dst  *string
	}{{"admin.token", &l.AdminToken}, {"join.token", &l.JoinToken}} {
		b, err := os.ReadFile(filepath.Join(l.ControllerDir, t.file))
		if err != nil {
			return fmt.Errorf("controller token: %w", err)
		}
		*t.dst = strings.TrimSpace(string(b))
	}
	return l.save()
}

// StopController stops the controller gracefully (SIGTERM, then SIGKILL after 5 s); a controller that
// does not run is left as it is.
func (l *Lab) StopController() error {
	l.Controller.terminate()
	return l.save()
}

// KillController SIGKILLs the controller, as a crash would, and waits until it is gone.
func (l *Lab) KillController() error {
	return l.killProc("controller", &l.Controller, syscall.SIGKILL)
}

// inUnderlay runs busybox's applet in the underlay namespace (no host process needs installing).
func (l *Lab) inUnderlay(applet string, args ...string) error {
	a := append([]string{"--net=/run/netns/" + l.UnderlayNetns, "/bin/busybox", applet}, args...)
	out, err := exec.Command("nsenter", a...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v %s", applet, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// StartAgent starts the agent of the named host inside its namespace and waits until its socket
// answers. Its flags are fixed at its first start and reused at every later one.
func (l *Lab) StartAgent(ctx context.Context, name string) error {
	h, err := l.Host(name)
	if err != nil {
		return err
	}
	if len(h.Agent.Argv) == 0 {
		h.Agent.Argv = append([]string{
			filepath.Join(l.Config.Bin, "ovagent"),
			"--host", h.Name,
			"--root", h.Dir,
			"--run-dir", h.RunDir,
			"--socket", h.Socket,
			"--cgroup-parent", l.CgroupParent(h),
			"--controller", l.ControllerURL,
			"--join-token", l.JoinToken,
			"--underlay-address", h.Addr,
			"--runtime", filepath.Join(l.Config.Bin, "ovrt"),
		}, append(l.agentMetricsFlags(), l.Config.AgentArgs...)...)
	}
	return l.startProc(ctx, "agent of "+h.Name, &h.Agent, func() error {
		c := http.Client{Transport: &http.Transport{DialContext: unixDialer(h.Socket)}, Timeout: time.Second}
		resp, err := c.Get("http://agent/v1/version")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// KillAgent sends sig to the agent of the named host and waits for it to exit (SIGKILL after 5 s).
// With SIGKILL the agent has no chance to clean up: its containers and their shims keep running, as
// after a crash.
func (l *Lab) KillAgent(name string, sig syscall.Signal) error {
	h, err := l.Host(name)
	if err != nil {
		return err
	}
	return l.killProc("agent of "+h.Name, &h.Agent, sig)
}

// Ctl returns an ovctl command aimed at the named host's agent and the lab's controller. It runs in the
// host's network namespace, as a user logged in on that host would.
func (l *Lab) Ctl(name string, args ...string) (*exec.Cmd, error) {
	h, err := l.Host(name)
	if err != nil {
		return nil, err
	}
	argv := append([]string{"--net=/run/netns/" + h.Netns, "--", filepath.Join(l.Config.Bin, "ovctl"),
		"--socket", h.Socket, "--controller", l.ControllerURL, "--token", l.AdminToken}, args...)
	return exec.Command("nsenter", argv...), nil
}

// CtlOutput runs ovctl on the named host (see Ctl) until it exits or ctx ends, and returns its standard
// output; a failure's error carries the command and its standard error.
func (l *Lab) CtlOutput(ctx context.Context, host string, args ...string) (string, error) {
	c, err := l.Ctl(host, args...)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ovctl %s on %s: %v: %s", strings.Join(args, " "), host, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Exec runs a command in the named host's network namespace and returns its combined output.
func (l *Lab) Exec(name string, argv ...string) (string, error) {
	h, err := l.Host(name)
	if err != nil {
		return "", err
	}
	out, err := exec.Command("nsenter", append([]string{"--net=/run/netns/" + h.Netns, "--"}, argv...)...).CombinedOutput()
	return string(out), err
}

// Down removes everything of the lab: containers (through each agent while it runs), agents,
// controller, every process left in the lab's namespaces, mounts under the lab's directories, the
// namespaces, the hosts' cgroups and the directories. It goes on after errors and reports the first.
func (l *Lab) Down(ctx context.Context) error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, h := range l.Hosts {
		if h.Agent.Running() {
			l.removeContainers(ctx, h.Name)
		}
	}
	for i := range l.Hosts { // agents first, then the controller, then its store
		l.Hosts[i].Agent.terminate()
	}
	l.Controller.terminate()
	for i := range l.Etcd {
		l.Etcd[i].Proc.terminate()
	}
	namespaces := []string{l.UnderlayNetns}
	for _, h := range l.Hosts {
		namespaces = append(namespaces, h.Netns)
	}
	for _, ns := range namespaces {
		killNetnsProcesses(ns)
	}
	keep(unmountUnder(l.Config.Dir))
	for _, ns := range namespaces {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			keep(run("ip", "netns", "delete", ns))
		}
	}
	for _, h := range l.Hosts {
		keep(removeCgroups(l.CgroupParent(&h)))
	}
	keep(os.RemoveAll(l.Config.Dir))
	return first
}

// removeContainers asks a host's agent to remove all its containers, so shims, mounts and cgroups go
// the normal way. Errors are ignored: what is left is killed and removed by Down afterwards.
func (l *Lab) removeContainers(ctx context.Context, name string) {
	cmd, err := l.Ctl(name, "ps", "-aq")
	if err != nil {
		return
	}
	out, err := cmd.Output()
	if err != nil {
		return
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return
	}
	rm, _ := l.Ctl(name, append([]string{"rm", "-f"}, ids...)...)
	done := make(chan struct{})
	go func() { _ = rm.Run(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = rm.Process.Kill()
	case <-ctx.Done():
		_ = rm.Process.Kill()
	}
}

// killNetnsProcesses SIGKILLs every process whose network namespace is ns.
func killNetnsProcesses(ns string) {
	for i := 0; i < 20; i++ {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			return
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var first error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && first == nil && err != syscall.EINVAL {
			first = fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return first
}

// unescape decodes the octal escapes (\040 for space) of /proc/self/mountinfo.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroups removes the cgroup path (and everything below it) from every mounted hierarchy,
// killing what still runs in it.
func removeCgroups(path string) error {
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	var first error
	for _, root := range roots {
		dir := filepath.Join(root, path)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
				for _, p := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(p); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			var err error
			for i := 0; i < 50; i++ {
				if err = syscall.Rmdir(d); err == nil || os.IsNotExist(err) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil && first == nil {
				first = fmt.Errorf("remove cgroup %s: %w", d, err)
			}
		}
	}
	return first
}

// cgroupRoots lists the mount points of every cgroup (v1 and v2) hierarchy.
func cgroupRoots() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var roots []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		i := strings.Index(line, " - ")
		if i < 0 {
			continue
		}
		fields, post := strings.Fields(line[:i]), strings.Fields(line[i+3:])
		if len(post) > 0 && (post[0] == "cgroup" || post[0] == "cgroup2") && len(fields) >= 5 {
			roots = append(roots, unescape(fields[4]))
		}
	}
	return roots, nil
}
