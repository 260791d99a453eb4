package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
)

// procImage imports "procimg": busybox with a user app (1000) whose primary group is app and who is a
// member of audio (29), a group video (44), and root a member of wheel (10).
func procImage(t *testing.T, l *lab) {
	t.Helper()
	rootfs := filepath.Join(l.dir, "procimg")
	testutil.BusyboxRootfs(t, rootfs)
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n",
		"etc/group":  "root:x:0:\nwheel:x:10:root\naudio:x:29:app\nvideo:x:44:\napp:x:1000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tarball := filepath.Join(l.dir, "procimg.tar")
	testutil.Run(t, "tar", "-C", rootfs, "-cf", tarball, ".")
	l.must("image", "import", tarball, "procimg:latest")
}

// runOut runs a --rm container on no network and returns its output; it fails unless it exits 0.
func (l *lab) runOut(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := l.ctl(append([]string{"run", "--rm", "--network", "none"}, args...)...)
	if code != 0 {
		t.Fatalf("ovctl run %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// runFails runs a container that must be refused with exit 125 and an error containing want.
func (l *lab) runFails(t *testing.T, want string, args ...string) {
	t.Helper()
	_, errs, code := l.ctl(append([]string{"run", "--rm", "--network", "none"}, args...)...)
	if code != 125 || !strings.Contains(errs, want) {
		t.Errorf("ovctl run %s: exit %d, stderr %q; want 125 and %q", strings.Join(args, " "), code, errs, want)
	}
}

// TestRunProcOptions checks from inside real containers the effect of each process and security flag
// of `ovctl run` (docs/run-options.md), with the values Docker gives.
func TestRunProcOptions(t *testing.T) {
	l := newLab(t)
	procImage(t, l)

	t.Run("supplementary groups", func(t *testing.T) { testGroups(t, l) })
	t.Run("init", func(t *testing.T) { testInit(t, l) })
	t.Run("stop signal and timeout", func(t *testing.T) { testStop(t, l) })
	t.Run("ulimit", func(t *testing.T) {
		out := l.runOut(t, "--ulimit", "nofile=100:200", "--ulimit", "nproc=50", "--ulimit", "core=-1", "procimg", "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u; ulimit -c")
		if want := "100\n200\n50\nunlimited\n"; out != want {
			t.Errorf("ulimits %q, want %q", out, want)
		}
		l.runFails(t, "soft limit exceeds the hard limit", "--ulimit", "nofile=300:200", "procimg", "true")
	})
	t.Run("security opts", func(t *testing.T) { testSecurityOpts(t, l) })
	t.Run("shm size", func(t *testing.T) {
		df := `df -k /dev/shm | awk 'NR==2 {print $2}'`
		if out := l.runOut(t, "procimg", "sh", "-c", df); out != "65536\n" {
			t.Errorf("default /dev/shm is %q KiB, want Docker's 65536", out)
		}
		if out := l.runOut(t, "--shm-size", "128m", "procimg", "sh", "-c", df); out != "131072\n" {
			t.Errorf("--shm-size 128m: /dev/shm is %q KiB, want 131072", out)
		}
	})
	t.Run("device", func(t *testing.T) { testDevice(t, l) })
	t.Run("add-host", func(t *testing.T) {
		id := l.runD("--add-host", "db:10.0.0.5", "--add-host", "gw:host-gateway", "procimg", "sleep", "60")
		hosts := l.must("exec", id, "cat", "/etc/hosts")
		gw := l.inspect(id).Networks[0].Gateway
		for _, want := range []string{"10.0.0.5\tdb\n", gw + "\tgw\n"} {
			if gw == "" || !strings.Contains(hosts, want) {
				t.Errorf("/etc/hosts:\n%s\nwant a line %q", hosts, want)
			}
		}
		l.must("rm", "-f", id)
	})
	t.Run("env-file", func(t *testing.T) {
		f := filepath.Join(l.dir, "env.list")
		if err := os.WriteFile(f, []byte("# settings\nA=from file\nB=file\nOV_PROC_TEST\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv("OV_PROC_TEST", "inherited")
		out := l.runOut(t, "--env-file", f, "-e", "B=flag", "procimg", "env")
		for _, want := range []string{"A=from file\n", "B=flag\n", "OV_PROC_TEST=inherited\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("env:\n%s\nwant %q", out, want)
			}
		}
	})
	t.Run("labels and ps --filter", func(t *testing.T) { testLabels(t, l) })
}

func testGroups(t *testing.T, l *lab) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"root", nil, "uid=0(root) gid=0(root) groups=0(root),10(wheel)\n"},
		// The kernel keeps supplementary groups sorted (setgroups), for Docker too.
		{"user's groups from /etc/group", []string{"-u", "app"}, "uid=1000(app) gid=1000(app) groups=29(audio),1000(app)\n"},
		{"uid finds the user's groups", []string{"-u", "1000"}, "uid=1000(app) gid=1000(app) groups=29(audio),1000(app)\n"},
		{"explicit group: no member groups", []string{"-u", "app:video"}, "uid=1000(app) gid=44(video) groups=44(video)\n"},
		{"--group-add name and gid", []string{"-u", "app", "--group-add", "video", "--group-add", "4000"}, "uid=1000(app) gid=1000(app) groups=29(audio),44(video),1000(app),4000\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out := l.runOut(t, append(tc.args, "procimg", "id")...); out != tc.want {
				t.Errorf("id: %q, want %q (as docker)", out, tc.want)
			}
		})
	}
	l.runFails(t, `--group-add "ghost": no such group`, "--group-add", "ghost", "procimg", "id")
	// exec gets the container's groups; exec -u the named user's, with the container's --group-add.
	id := l.runD("--network", "none", "-u", "app", "--group-add", "video", "procimg", "sleep", "60")
	for args, want := range map[string]string{
		"":     "uid=1000(app) gid=1000(app) groups=29(audio),44(video),1000(app)\n",
		"-u 0": "uid=0(root) gid=0(root) groups=0(root),10(wheel),44(video)\n",
	} {
		if out := l.must(append(append([]string{"exec"}, strings.Fields(args)...), id, "id")...); out != want {
			t.Errorf("exec %s id: %q, want %q", args, out, want)
		}
	}
	l.must("rm", "-f", id)
}

// zombies counts the zombie processes in container id.
func zombies(t *testing.T, l *lab, id string) string {
	t.Helper()
	return strings.TrimSpace(l.must("exec", id, "sh", "-c", `grep -s '^State:' /proc/[0-9]*/status | grep -c zombie; true`))
}

func testInit(t *testing.T, l *lab) {
	// An orphan (sleep 0.2, whose parent subshell exits at once) is reparented to PID 1; sleep 60, the
	// command, never waits for it.
	orphan := []string{"procimg", "sh", "-c", "(sleep 0.2 &); exec sleep 60"}
	withInit := l.runD(append([]string{"--network", "none", "--init"}, orphan...)...)
	without := l.runD(append([]string{"--network", "none"}, orphan...)...)
	time.Sleep(1500 * time.Millisecond)
	if n := zombies(t, l, withInit); n != "0" {
		t.Errorf("with --init: %s zombies, want 0 (the init reaps orphans)", n)
	}
	if n := zombies(t, l, without); n == "0" {
		t.Errorf("without --init: no zombie; the test shows nothing (the orphan should stay a zombie of sleep)")
	}
	if ps := l.must("exec", withInit, "cat", "/proc/1/cmdline"); !strings.HasPrefix(ps, "/sbin/docker-init\x00--\x00sh") {
		t.Errorf("PID 1 is %q, want /sbin/docker-init -- sh ...", ps)
	}
	if c := l.inspect(withInit).Command; len(c) == 0 || c[0] != "sh" {
		t.Errorf("inspect shows the command %q, want the container's (sh ...), not the init's", c)
	}
	l.must("rm", "-f", withInit, without)

	// With -t the command is the terminal's foreground process group (^C reaches it from the
	// terminal): its pgrp (field 5 of stat) is the terminal's (field 8).
	tty := l.runD("--network", "none", "-t", "--init", "procimg", "sh", "-c", "echo fg=$(cut -d' ' -f5,8 /proc/self/stat); sleep 60")
	testutil.Eventually(t, 10*time.Second, func() error {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(l.must("logs", tty)), "fg="))
		if len(f) != 2 || f[0] != f[1] {
			return fmt.Errorf("with -t --init: pgrp and terminal pgrp %q, want equal", f)
		}
		return nil
	})
	l.must("rm", "-f", tty)

	// The exit code goes through the init; a signal's as 128+n.
	for cmd, want := range map[string]int{"exit 7": 7, "kill -9 $$": 137} {
		if _, errs, code := l.ctl("run", "--rm", "--network", "none", "--init", "procimg", "sh", "-c", cmd); code != want {
			t.Errorf("--init sh -c %q: exit %d (%s), want %d", cmd, code, errs, want)
		}
	}
	if _, errs, code := l.ctl("run", "--rm", "--network", "none", "--init", "procimg", "nosuchcommand"); code != 127 {
		t.Errorf("--init nosuchcommand: exit %d (%s), want 127", code, errs)
	}
}

// stopTook stops id with ovctl stop (extra flags) and returns how long it took and the exit code.
func stopTook(t *testing.T, l *lab, id string, flags ...string) (time.Duration, int) {
	t.Helper()
	t0 := time.Now()
	l.must(append(append([]string{"stop"}, flags...), id)...)
	took := time.Since(t0)
	return took, l.inspect(id).State.ExitCode
}

func testStop(t *testing.T, l *lab) {
	// sleep as PID 1 ignores SIGTERM (the kernel gives PID 1 no default action): only the init's
	// forwarding makes it stop at once.
	withInit := l.runD("--network", "none", "--init", "procimg", "sleep", "100")
	if took, code := stopTook(t, l, withInit); took > 4*time.Second || code != 143 {
		t.Errorf("stop with --init: %v, exit %d; want well under the 10s timeout and 143 (SIGTERM forwarded)", took, code)
	}
	// Without the init it takes the --stop-timeout, then SIGKILL.
	plain := l.runD("--network", "none", "--stop-timeout", "2", "procimg", "sleep", "100")
	if took, code := stopTook(t, l, plain); took < 2*time.Second || took > 6*time.Second || code != 137 {
		t.Errorf("stop of a container with --stop-timeout 2: %v, exit %d; want about 2s and 137", took, code)
	}
	// -t wins over --stop-timeout.
	plain2 := l.runD("--network", "none", "--stop-timeout", "30", "procimg", "sleep", "100")
	if took, code := stopTook(t, l, plain2, "-t", "1"); took > 5*time.Second || code != 137 {
		t.Errorf("stop -t 1 of a container with --stop-timeout 30: %v, exit %d; want about 1s and 137", took, code)
	}
	// --stop-signal: the shell traps USR1 (and, as PID 1, ignores TERM).
	sig := l.runD("--network", "none", "--stop-signal", "SIGUSR1", "procimg", "sh", "-c", `trap "echo got-usr1; exit 0" USR1; echo ready; while true; do sleep 0.1; done`)
	testutil.Eventually(t, 10*time.Second, func() error { // the trap is set
		if !strings.Contains(l.must("logs", sig), "ready") {
			return fmt.Errorf("the shell has not set its trap yet")
		}
		return nil
	})
	if took, code := stopTook(t, l, sig); took > 4*time.Second || code != 0 {
		t.Errorf("stop with --stop-signal SIGUSR1: %v, exit %d; want at once and 0", took, code)
	}
	if logs := l.must("logs", sig); !strings.Contains(logs, "got-usr1") {
		t.Errorf("logs %q: the stop signal did not reach the trap", logs)
	}
	l.must("rm", withInit, plain, plain2, sig)
}

func testSecurityOpts(t *testing.T, l *lab) {
	status := `grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -d ' \t' | tr '\n' ' '`
	for _, tc := range []struct {
		opts []string
		want string
	}{
		{nil, "NoNewPrivs:1 Seccomp:2 "},
		{[]string{"--security-opt", "no-new-privileges"}, "NoNewPrivs:1 Seccomp:2 "},
		{[]string{"--security-opt", "no-new-privileges=false"}, "NoNewPrivs:0 Seccomp:2 "},
		{[]string{"--security-opt", "seccomp=unconfined"}, "NoNewPrivs:1 Seccomp:0 "},
	} {
		if out := l.runOut(t, append(tc.opts, "procimg", "sh", "-c", status)...); out != tc.want {
			t.Errorf("%v: %q, want %q", tc.opts, out, tc.want)
		}
	}
	profile := filepath.Join(l.dir, "no-mkdir.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, _ := l.ctl("run", "--rm", "--network", "none", "--security-opt", "seccomp="+profile, "procimg", "sh", "-c", "mkdir /tmp/d 2>&1; "+status)
	if !strings.Contains(out, "Operation not permitted") || !strings.Contains(out, "Seccomp:2") {
		t.Errorf("with a profile denying mkdir: %q, want mkdir refused under a filter", out)
	}
	broken := filepath.Join(l.dir, "broken.json")
	if err := os.WriteFile(broken, []byte(`{"defaultAction":`), 0o644); err != nil {
		t.Fatal(err)
	}
	l.runFails(t, "not valid JSON", "--security-opt", "seccomp="+broken, "procimg", "true")
}

func testDevice(t *testing.T, l *lab) {
	// /dev/kmsg (1:11) is not among a container's default devices: a node made with mknod cannot be
	// opened (the device cgroup), one given with --device can, with the permissions given.
	open := "ls -l /dev/mykmsg | cut -c1; exec 3>/dev/mykmsg && echo opened"
	if out := l.runOut(t, "--device", "/dev/kmsg:/dev/mykmsg", "procimg", "sh", "-c", open); out != "c\nopened\n" {
		t.Errorf("--device /dev/kmsg:/dev/mykmsg: %q, want a character device that opens", out)
	}
	out, errs, _ := l.ctl("run", "--rm", "--network", "none", "--device", "/dev/kmsg:/dev/mykmsg:r", "procimg", "sh", "-c", open)
	if strings.Contains(out, "opened") || !strings.Contains(errs, "Operation not permitted") {
		t.Errorf("--device ...:r then open for writing: %q %q, want refused by the device cgroup", out, errs)
	}
	out, errs, _ = l.ctl("run", "--rm", "--network", "none", "procimg", "sh", "-c", "mknod /dev/mykmsg c 1 11; "+open)
	if strings.Contains(out, "opened") || !strings.Contains(errs, "Operation not permitted") {
		t.Errorf("without --device: %q %q, want the node refused by the device cgroup", out, errs)
	}
	l.runFails(t, "not a character or block device", "--device", "/etc/hostname", "procimg", "true")
}

func testLabels(t *testing.T, l *lab) {
	web := l.runD("--network", "none", "--label", "app=web", "-l", "tier=front", "procimg", "sleep", "60")
	db := l.runD("--network", "none", "--label", "app=db", "procimg", "sleep", "60")
	if got := l.inspect(web).Config.Labels; got["app"] != "web" || got["tier"] != "front" {
		t.Errorf("inspect labels %v, want app=web tier=front", got)
	}
	short := func(id string) string { return id[:12] }
	for _, tc := range []struct {
		filter []string
		want   string
	}{
		{[]string{"label=app"}, short(web) + " " + short(db)},
		{[]string{"label=app=web"}, short(web)},
		{[]string{"label=app=web", "label=tier=back"}, ""},
		{[]string{"id=" + db[:8]}, short(db)},
	} {
		args := []string{"ps", "-q"}
		for _, f := range tc.filter {
			args = append(args, "--filter", f)
		}
		got := strings.Fields(l.must(args...))
		want := strings.Fields(tc.want)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("ps --filter %v: %v, want %v", tc.filter, got, want)
		}
	}
	l.must("stop", "-t", "0", db)
	if got := strings.TrimSpace(l.must("ps", "-q", "--filter", "status=exited")); got != short(db) {
		t.Errorf("ps --filter status=exited (no -a): %q, want %s", got, short(db))
	}
	if got := l.must("ps", "--filter", "name="+regexp.QuoteMeta(l.inspect(web).Name)); !strings.Contains(got, short(web)) {
		t.Errorf("ps --filter name=: %q", got)
	}
	l.must("rm", "-f", web, db)
}
