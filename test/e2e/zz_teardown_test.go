package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTeardownLeavesNothing runs last (files are taken in name order): it takes every lab down and
// checks that no namespace, link, mount, cgroup, iptables rule or process of ov remains.
func TestTeardownLeavesNothing(t *testing.T) {
	sharedLab(t)
	labsMu.Lock()
	all := labs
	labs = nil
	labsMu.Unlock()
	var prefixes, dirs []string
	for _, l := range all {
		prefixes = append(prefixes, l.Config.Prefix+"-")
		dirs = append(dirs, l.Config.Dir)
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab %s down: %v", l.Config.Prefix, err)
		}
	}
	// namespaces (and with them every link, address and iptables rule the agents made in them)
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, p := range prefixes {
		if strings.Contains(string(out), p) {
			t.Errorf("namespaces of lab %s left:\n%s", p, out)
		}
	}
	// links in the machine's own namespace: the lab makes none there; nothing named after it may appear
	out, _ = exec.Command("ip", "-o", "link").Output()
	for _, p := range prefixes {
		if strings.Contains(string(out), p) {
			t.Errorf("links of lab %s left in the host namespace:\n%s", p, out)
		}
	}
	// mounts under the labs' directories (rootfs overlays, namespace bind mounts)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(f)
	for s.Scan() {
		for _, d := range dirs {
			if strings.Contains(s.Text(), d) {
				t.Errorf("mount left: %s", s.Text())
			}
		}
	}
	f.Close()
	// processes started from the labs' directories or binaries (agents, shims, controller, containers)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		for _, d := range append(dirs, binDir) {
			if strings.Contains(cmd, d) {
				t.Errorf("process left: %s %s", p, cmd)
			}
		}
	}
	// cgroups of every container the tests ran, in every hierarchy
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	labsMu.Lock()
	defer labsMu.Unlock()
	for id := range ids {
		for _, r := range roots {
			matches, _ := filepath.Glob(filepath.Join(r, "*", id))
			for _, m := range matches {
				t.Errorf("cgroup of container %s left: %s", id[:12], m)
			}
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("lab directory %s left", d)
		}
	}
}
