package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/testutil"
)

// TestRestartPolicies drives restart policies through ovctl as a Docker user would (docs/restart.md).
func TestRestartPolicies(t *testing.T) {
	l := newLab(t)

	// --restart with --rm is refused, as docker refuses it, and nothing is created.
	if _, errs, code := l.ctl("run", "-d", "--rm", "--restart", "always", "busybox", "true"); code != 125 || !strings.Contains(errs, "Conflicting options: --restart and --rm") {
		t.Errorf("run --rm --restart always: exit %d %q; want 125 and the conflict", code, errs)
	}
	if _, errs, code := l.ctl("run", "-d", "--restart", "always:2", "busybox", "true"); code != 125 || !strings.Contains(errs, "on-failure") {
		t.Errorf("run --restart always:2: exit %d %q; want 125 saying the count is for on-failure", code, errs)
	}

	// on-failure:2 and exit 3: exactly two restarts, then exited with RestartCount 2; the log of the
	// three runs is one log.
	onf := l.runD("--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3")
	testutil.Eventually(t, 30*time.Second, func() error {
		if c := l.inspect(onf); c.State.Status != api.StateExited || c.RestartCount != 2 {
			return fmt.Errorf("status %s, RestartCount %d; want exited after 2 restarts", c.State.Status, c.RestartCount)
		}
		return nil
	})
	time.Sleep(time.Second) // a third restart would come 400 ms after the last exit
	if c := l.inspect(onf); c.State.Status != api.StateExited || c.RestartCount != 2 || c.State.ExitCode != 3 {
		t.Errorf("on-failure:2 later: %s, exit %d, RestartCount %d; want exited 3 with RestartCount 2", c.State.Status, c.State.ExitCode, c.RestartCount)
	}
	if out := l.must("logs", onf); out != "run\nrun\nrun\n" {
		t.Errorf("logs of the 3 runs: %q", out)
	}

	// on-failure and exit 0: no restart.
	ok := l.runD("--restart", "on-failure", "busybox", "true")
	l.must("wait", ok)
	time.Sleep(500 * time.Millisecond)
	if c := l.inspect(ok); c.State.Status != api.StateExited || c.RestartCount != 0 {
		t.Errorf("on-failure after exit 0: %s, RestartCount %d; want exited, not restarted", c.State.Status, c.RestartCount)
	}

	alwaysBackoff(t, l)

	// stop of a running always container: it stays stopped.
	srv := l.runD("--restart", "always", "busybox", "sleep", "600")
	l.must("stop", "-t", "1", srv)
	time.Sleep(time.Second)
	if c := l.inspect(srv); c.State.Status != api.StateExited || c.RestartCount != 0 || !c.ManuallyStopped {
		t.Errorf("always after stop: %s, RestartCount %d, ManuallyStopped %v; want exited, not restarted", c.State.Status, c.RestartCount, c.ManuallyStopped)
	}
	// kill too.
	k := l.runD("--restart", "unless-stopped", "busybox", "sleep", "600")
	l.must("kill", k)
	l.must("wait", k)
	time.Sleep(time.Second)
	if c := l.inspect(k); c.State.Status != api.StateExited || c.RestartCount != 0 {
		t.Errorf("unless-stopped after kill: %s, RestartCount %d; want exited, not restarted", c.State.Status, c.RestartCount)
	}
	// start clears the stop: the policy applies again.
	l.must("start", srv)
	if c := l.inspect(srv); c.State.Status != api.StateRunning || c.ManuallyStopped {
		t.Errorf("always after start: %s, ManuallyStopped %v", c.State.Status, c.ManuallyStopped)
	}
	pid := l.inspect(srv).State.Pid
	if err := l.killPid(pid); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if c := l.inspect(srv); c.State.Status != api.StateRunning || c.RestartCount != 1 || c.State.Pid == pid {
			return fmt.Errorf("%s, RestartCount %d, pid %d (was %d); want running again, restarted once", c.State.Status, c.RestartCount, c.State.Pid, pid)
		}
		return nil
	})
	// A restarting container is not removed without force.
	l.must("rm", "-f", onf, ok, srv, k)
}

// killPid kills a container's process from outside, as a crash would.
func (l *lab) killPid(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// alwaysBackoff: an always container that exits at once is restarted with a delay that grows
// (100 ms, 200 ms, ... as docker), and ps shows it Restarting meanwhile; a stop ends it. Its runs
// write the uptime to a file of its rootfs, which every restart keeps.
func alwaysBackoff(t *testing.T, l *lab) {
	t.Helper()
	id := l.runD("--restart", "always", "busybox", "sh", "-c", "cut -d' ' -f1 /proc/uptime >> /runs; exit 0")
	testutil.Eventually(t, 60*time.Second, func() error {
		if n := l.inspect(id).RestartCount; n < 5 {
			return fmt.Errorf("restarted %d times, want 5", n)
		}
		return nil
	})
	re := regexp.MustCompile(`Restarting \(0\) [0-9]+ seconds ago`)
	testutil.Eventually(t, 60*time.Second, func() error {
		out := l.must("ps")
		if !strings.Contains(out, id[:12]) || !re.MatchString(out) {
			return fmt.Errorf("ps does not show it Restarting:\n%s", out)
		}
		return nil
	})
	c := l.inspect(id)
	b, err := os.ReadFile(filepath.Join(c.Rootfs, "runs"))
	if err != nil {
		t.Fatalf("the file written by every run is not in the rootfs: %v", err)
	}
	var up []float64
	for _, f := range strings.Fields(string(b)) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			t.Fatalf("runs: %q", b)
		}
		up = append(up, v)
	}
	if len(up) < 5 {
		t.Fatalf("%d runs recorded (%q), want at least 5", len(up), b)
	}
	// Lower bounds only (a slow machine makes gaps longer, never shorter): the gap before the 5th run
	// follows a 800 ms delay, the one before the 2nd a 100 ms delay.
	if gap := up[4] - up[3]; gap < 0.75 {
		t.Errorf("run 5 came %.2fs after run 4; the backoff delay is 800 ms (runs at %v)", gap, up)
	}
	if gap := up[4] - up[3]; gap <= up[1]-up[0] {
		t.Errorf("the delay does not grow: runs at %v", up)
	}
	l.must("stop", id)
	n := l.inspect(id).RestartCount
	time.Sleep(2 * time.Second)
	if c := l.inspect(id); c.State.Status != api.StateExited || c.RestartCount != n {
		t.Errorf("always after stop: %s, RestartCount %d (was %d); want exited, no more restarts", c.State.Status, c.RestartCount, n)
	}
	l.must("rm", id)
}

// TestRestartPoliciesAcrossAgentRestart: the agent killed with SIGKILL and started again leaves
// running containers alone, starts the always containers the user stopped but not the
// unless-stopped ones, and resumes restarts that were pending.
func TestRestartPoliciesAcrossAgentRestart(t *testing.T) {
	l := newLab(t)
	always := l.runD("--restart", "always", "busybox", "sleep", "600")
	unless := l.runD("--restart", "unless-stopped", "busybox", "sleep", "600")
	running := l.runD("--restart", "always", "busybox", "sleep", "600")
	crash := l.runD("--restart", "on-failure:20", "busybox", "sh", "-c", "exit 1")
	l.must("stop", "-t", "1", always, unless)
	pid := l.inspect(running).State.Pid
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := l.inspect(crash).RestartCount; n < 6 {
			return fmt.Errorf("crash restarted %d times, want 6 (its next delay is then 6.4 s)", n)
		}
		return nil
	})
	before := l.inspect(crash).RestartCount
	l.kill9()
	l.start()
	if c := l.inspect(running); c.State.Status != api.StateRunning || c.State.Pid != pid || c.RestartCount != 0 {
		t.Errorf("running container after the agent restart: %s pid %d (was %d), RestartCount %d", c.State.Status, c.State.Pid, pid, c.RestartCount)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if c := l.inspect(always); c.State.Status != api.StateRunning {
			return fmt.Errorf("always (stopped by the user) is %s after the agent restart; docker starts it", c.State.Status)
		}
		return nil
	})
	time.Sleep(time.Second)
	if c := l.inspect(unless); c.State.Status != api.StateExited {
		t.Errorf("unless-stopped (stopped by the user) is %s after the agent restart; want exited", c.State.Status)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if c := l.inspect(crash); c.RestartCount <= before {
			return fmt.Errorf("crash: RestartCount %d, was %d before the agent restart: the restart did not resume", c.RestartCount, before)
		}
		return nil
	})
	l.must("rm", "-f", always, unless, running, crash)
}

// TestStartExited: `ovctl start` of an exited container runs it again as docker does: same ID, rootfs
// (a file written before is there), address, DNS name, and its log goes on; also after an agent
// restart.
func TestStartExited(t *testing.T) {
	l := newLab(t)
	l.must("network", "create", "--subnet", "10.94.0.0/24", "rsnet")
	web := l.runD("--name", "web", "--network", "rsnet", "busybox", "sh", "-c", "echo started; exec sleep 600")
	cli := l.runD("--name", "cli", "--network", "rsnet", "busybox", "sleep", "600")
	ip := l.ip(web)
	cliIP := l.ip(cli)
	// web's name from cli, and cli's from web (web's own resolver serves it again).
	lookup := func() error {
		out, _, code := l.ctl("exec", "cli", "nslookup", "web", "127.0.0.11")
		if code != 0 || !strings.Contains(out, ip) {
			return fmt.Errorf("nslookup web: exit %d %q, want %s", code, out, ip)
		}
		out, _, code = l.ctl("exec", "web", "nslookup", "cli", "127.0.0.11")
		if code != 0 || !strings.Contains(out, cliIP) {
			return fmt.Errorf("nslookup cli in web: exit %d %q, want %s", code, out, cliIP)
		}
		return nil
	}
	testutil.Eventually(t, 20*time.Second, lookup)
	l.must("exec", "web", "sh", "-c", "echo kept > /kept")
	for round, restartAgent := range []bool{false, true} {
		l.must("stop", "-t", "1", "web")
		if c := l.inspect(web); c.State.Status != api.StateExited {
			t.Fatalf("web after stop: %s", c.State.Status)
		}
		if restartAgent {
			l.kill9()
			l.start()
		}
		l.must("start", "web")
		c := l.inspect(web)
		if c.State.Status != api.StateRunning || c.ID != web || c.Networks[0].IP != ip {
			t.Fatalf("round %d: after start: %s, ID %s, IP %s; want running with the same ID and IP %s", round, c.State.Status, c.ID, c.Networks[0].IP, ip)
		}
		if out := l.must("exec", "web", "cat", "/kept"); out != "kept\n" {
			t.Errorf("round %d: the file written before the stop: %q", round, out)
		}
		testutil.Eventually(t, 20*time.Second, lookup)
		if out := l.must("logs", "web"); strings.Count(out, "started\n") != round+2 {
			t.Errorf("round %d: logs %q, want one line per run", round, out)
		}
	}
	l.must("rm", "-f", web, cli)
	l.must("network", "rm", "rsnet")
}
