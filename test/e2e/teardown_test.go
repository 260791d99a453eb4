package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ovnet/ov/internal/lab"
)

// teardown takes every lab the tests started down and returns what of ov remains: namespaces, links,
// mounts, processes, cgroups of the containers the tests saw (ids), lab directories. TestMain runs it
// after m.Run, whichever tests ran and whatever the files are named; a non-empty answer fails the run.
func teardown(all []*lab.Lab, ids map[string]bool) []string {
	var left []string
	errorf := func(format string, args ...any) { left = append(left, fmt.Sprintf(format, args...)) }
	var prefixes, dirs []string
	for _, l := range all {
		prefixes = append(prefixes, l.Config.Prefix+"-")
		dirs = append(dirs, l.Config.Dir)
		if err := l.Down(context.Background()); err != nil {
			errorf("lab %s down: %v", l.Config.Prefix, err)
		}
	}
	// namespaces (and with them every link, address and iptables rule the agents made in them)
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, p := range prefixes {
		if strings.Contains(string(out), p) {
			errorf("namespaces of lab %s left:\n%s", p, out)
		}
	}
	// links in the machine's own namespace: the lab makes none there; nothing named after it may appear
	out, _ = exec.Command("ip", "-o", "link").Output()
	for _, p := range prefixes {
		if strings.Contains(string(out), p) {
			errorf("links of lab %s left in the host namespace:\n%s", p, out)
		}
	}
	// mounts under the labs' directories (rootfs overlays, namespace bind mounts)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		errorf("mounts: %v", err)
	} else {
		s := bufio.NewScanner(f)
		for s.Scan() {
			for _, d := range dirs {
				if strings.Contains(s.Text(), d) {
					errorf("mount left: %s", s.Text())
				}
			}
		}
		f.Close()
	}
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
				errorf("process left: %s %s", p, cmd)
			}
		}
	}
	// cgroups of every container the tests ran, in every hierarchy
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for id := range ids {
		for _, r := range roots {
			matches, _ := filepath.Glob(filepath.Join(r, "*", id))
			for _, m := range matches {
				errorf("cgroup of container %s left: %s", id[:12], m)
			}
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			errorf("lab directory %s left", d)
		}
	}
	return left
}
