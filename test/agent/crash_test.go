package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ovnet/ov/api"
)

// TestAgentQuarantinesDamagedRecords damages the records of three running containers while the agent
// is down after a crash (SIGKILL), as a power loss or a bad disk would: one truncated, one zeroed (same
// length), one removed. The restarted agent must keep every container running with its files, set
// the bad records aside (never delete them), and say what happened in ps -a and its log. rm -f then
// removes a quarantined container deliberately.
func TestAgentQuarantinesDamagedRecords(t *testing.T) {
	l := newLab(t)
	damage := []struct {
		name   string
		spoil  func(path string) error
		reason string // in the quarantine reason
	}{
		{"truncated", func(p string) error {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, fi.Size()/2)
		}, "unexpected end of JSON input"},
		{"zeroed", func(p string) error {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.WriteFile(p, make([]byte, fi.Size()), 0o600)
		}, "invalid character"},
		{"removed", os.Remove, "record missing"},
	}
	ids, pids := map[string]string{}, map[string]int{}
	for _, d := range damage {
		ids[d.name] = l.runD("--name", d.name, "--network", "none", "busybox", "sleep", "1000")
		l.must("exec", d.name, "sh", "-c", "echo kept > /kept")
		pids[d.name] = l.inspect(d.name).State.Pid
	}
	record := func(name string) string {
		return filepath.Join(l.dir, "lib", "containers", ids[name], "container.json")
	}
	l.kill9()
	for _, d := range damage {
		if err := d.spoil(record(d.name)); err != nil {
			t.Fatal(err)
		}
	}
	l.start()
	checkQuarantined := func(when string) {
		t.Helper()
		byID := map[string]api.Container{}
		for _, c := range l.ps(true) {
			byID[c.ID] = c
		}
		for _, d := range damage {
			id := ids[d.name]
			checkAlive(t, when, d.name, id, pids[d.name])
			upper := filepath.Join(l.dir, "lib", "images", "containers", id, "upper", "kept")
			if b, err := os.ReadFile(upper); err != nil || string(b) != "kept\n" {
				t.Errorf("%s: %s: the container's upper dir lost /kept: %q, %v", when, d.name, b, err)
			}
			c, ok := byID[id]
			switch {
			case !ok:
				t.Errorf("%s: ps -a does not list the %s container", when, d.name)
			case !strings.Contains(c.Quarantine, d.reason):
				t.Errorf("%s: %s container: quarantine reason %q, want it to say %q", when, d.name, c.Quarantine, d.reason)
			case c.Image != "busybox:latest":
				t.Errorf("%s: %s container's image %q, want busybox:latest (from its rootfs)", when, d.name, c.Image)
			case c.State.Status != api.StateRunning || c.State.Pid != pids[d.name]:
				t.Errorf("%s: %s container is %s (pid %d), want running (pid %d)", when, d.name, c.State.Status, c.State.Pid, pids[d.name])
			}
			if d.name != "removed" {
				set, _ := filepath.Glob(filepath.Join(filepath.Dir(record(d.name)), "container.json.corrupt-*"))
				if len(set) != 1 {
					t.Errorf("%s: %s: %d records set aside, want 1", when, d.name, len(set))
				}
			}
			if !logged(l.agentLog(), "container quarantined", api.ShortID(id)) {
				t.Errorf("%s: the agent log does not report the %s container %s as quarantined", when, d.name, api.ShortID(id))
			}
		}
		if out := l.must("ps", "-a"); strings.Count(out, "(record quarantined: ") != len(damage) {
			t.Errorf("%s: ps -a does not show %d quarantined containers:\n%s", when, len(damage), out)
		}
	}
	checkQuarantined("after the restart")
	// Another crash and restart reports the same, from the records set aside.
	l.kill9()
	l.start()
	checkQuarantined("after a second restart")

	// rm without force refuses; rm -f kills the container and deletes its files.
	if _, errs, code := l.ctl("rm", ids["zeroed"]); code == 0 || !strings.Contains(errs, "quarantined") {
		t.Errorf("rm of a quarantined container without -f: exit %d, %q; want a refusal naming the quarantine", code, errs)
	}
	l.must("rm", "-f", ids["zeroed"])
	if err := syscall.Kill(pids["zeroed"], 0); err == nil {
		t.Errorf("the zeroed container's process %d still runs after rm -f", pids["zeroed"])
	}
	if _, err := os.Stat(filepath.Dir(record("zeroed"))); err == nil {
		t.Errorf("rm -f left the zeroed container's directory")
	}
}

// checkAlive fails the test unless pid is still the init (sleep 1000) of container id, in its cgroup.
func checkAlive(t *testing.T, when, name, id string, pid int) {
	t.Helper()
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !bytes.Contains(cmdline, []byte("sleep\x001000")) {
		t.Errorf("%s: the %s container's process %d is gone (cmdline %q, %v)", when, name, pid, cmdline, err)
		return
	}
	cg, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil || !strings.Contains(string(cg), id) {
		t.Errorf("%s: the %s container's process %d left its cgroup:\n%s", when, name, pid, cg)
	}
}

// logged tells whether a line of log holds all of words.
func logged(log string, words ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}
