package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
)

// Attack tests of docs/security-disk.md: what an unprivileged user on the host can do to ov's
// containers through the file system and the API socket.

// asNobody runs name args as uid/gid 65534 with no supplementary groups but groups (setpriv, from
// util-linux), and returns its combined output and error.
func asNobody(groups []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sp := []string{"--reuid=65534", "--regid=65534"}
	if len(groups) == 0 {
		sp = append(sp, "--clear-groups")
	} else {
		sp = append(sp, "--groups="+strings.Join(groups, ","))
	}
	out, err := exec.CommandContext(ctx, "setpriv", append(append(sp, "--", name), args...)...).CombinedOutput()
	return string(out), err
}

// startWith starts the lab's agent (stopped before) with extra flags, as lab.start does.
func (l *lab) startWith(extra ...string) {
	l.t.Helper()
	logf, err := os.OpenFile(filepath.Join(l.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + l.ns, l.agentBin,
		"--root", filepath.Join(l.dir, "lib"), "--run-dir", filepath.Join(l.dir, "run"),
		"--runtime", l.runtime, "--log-level", "debug", "--mtu", "1500"}, extra...)...)
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
		if _, _, code := l.ctl("version"); code != 0 {
			return fmt.Errorf("agent not answering yet")
		}
		return nil
	})
}

// openLabDir makes the lab's directory (a 0700 temporary directory) traversable by everyone, as
// /var/lib and /run are, so that only ov's own modes stand between a host user and its state.
func openLabDir(t *testing.T, l *lab) {
	t.Helper()
	if err := os.Chmod(l.dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// containerPaths are the host paths of a container's files an attacker would go for: its setuid
// binary and a secret through the rootfs mount and the upper dir, a file of an image layer, its log,
// its record and its OCI bundle.
func containerPaths(t *testing.T, l *lab, id string) []string {
	t.Helper()
	rootfs := l.inspect(id).Rootfs
	if rootfs == "" {
		t.Fatalf("container %s has no rootfs in its record", id)
	}
	upper := filepath.Join(filepath.Dir(rootfs), "upper")
	layers, _ := filepath.Glob(filepath.Join(l.dir, "lib", "images", "layers", "sha256", "*", "bin", "busybox"))
	if len(layers) == 0 {
		t.Fatalf("no image layer holds bin/busybox under %s", filepath.Join(l.dir, "lib", "images", "layers"))
	}
	return []string{
		filepath.Join(rootfs, "suid"), filepath.Join(upper, "suid"),
		filepath.Join(rootfs, "secret"), filepath.Join(upper, "secret"),
		layers[0],
		filepath.Join(l.dir, "lib", "containers", id, id+"-json.log"),
		filepath.Join(l.dir, "lib", "containers", id, "container.json"),
		filepath.Join(l.dir, "run", "containers", id, "config.json"),
	}
}

// attackFiles tries, as nobody, to stat, read and execute each path, and returns what succeeded.
func attackFiles(paths []string) []string {
	var got []string
	for _, p := range paths {
		if out, err := asNobody(nil, "stat", "-c", "%A %U", p); err == nil {
			got = append(got, fmt.Sprintf("stat %s: %s", p, strings.TrimSpace(out)))
		}
		if out, err := asNobody(nil, "head", "-c", "16", p); err == nil {
			got = append(got, fmt.Sprintf("read %s: %q", p, out))
		}
		if strings.HasSuffix(p, "suid") || strings.HasSuffix(p, "busybox") {
			// Through a shell: setpriv itself may exec a path its new user could not reach.
			if out, err := asNobody(nil, "sh", "-c", `exec "$0" true`, p); !strings.Contains(out, "Permission denied") {
				got = append(got, fmt.Sprintf("exec %s: %v %q", p, err, out))
			}
		}
	}
	return got
}

// TestUnprivilegedUserCannotReachContainerFiles: a host user without privileges who knows a
// container's ID (as anyone does, from /proc/self/mountinfo) cannot stat, read or execute anything
// under its rootfs, upper dir, image layers, log, record or bundle, not even a setuid-root binary made
// inside the container; a store left open by an older version is shut by the next agent start; and a
// container running as a non-root user still works (its files are reached through its mount
// namespace, not through these paths).
func TestUnprivilegedUserCannotReachContainerFiles(t *testing.T) {
	l := newLab(t)
	openLabDir(t, l)
	id := l.runD("--name", "victim", "busybox", "sleep", "1000")
	l.must("exec", id, "sh", "-c", "cp /bin/busybox /suid && chmod 4755 /suid && echo secret > /secret")
	paths := containerPaths(t, l, id)
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); !strings.Contains(string(mi), id) {
		t.Errorf("the container's ID is not in /proc/self/mountinfo; the attacker's premise changed")
	}
	if got := attackFiles(paths); len(got) > 0 {
		t.Errorf("an unprivileged host user reached the container's files:\n%s", strings.Join(got, "\n"))
	}

	t.Run("non-root container user still works", func(t *testing.T) {
		out := l.must("run", "--rm", "-u", "1000:1000", "busybox", "sh", "-c", "id -u; cat /etc/passwd >/dev/null && echo ok >/tmp/f && cat /tmp/f && ls / >/dev/null && echo listed")
		if want := "1000\nok\nlisted\n"; out != want {
			t.Errorf("run -u 1000:1000 printed %q, want %q", out, want)
		}
		out = l.must("exec", "-u", "1000", id, "sh", "-c", "id -u; head -c 4 /secret; ls /bin/busybox")
		if want := "1000\nsecr/bin/busybox\n"; out != want {
			t.Errorf("exec -u 1000 printed %q, want %q", out, want)
		}
	})

	t.Run("upgrade from an open store", func(t *testing.T) {
		// The modes the store had before: the root, images/ and images/containers/ and each container's
		// directory 0711 (the containers' upper and rootfs keep 0755, the image's "/").
		l.term()
		lib := filepath.Join(l.dir, "lib")
		old := map[string]os.FileMode{lib: 0o711, filepath.Join(lib, "images"): 0o711,
			filepath.Join(lib, "images", "containers"): 0o711, filepath.Join(lib, "images", "containers", id): 0o711,
			filepath.Join(lib, "images", "layers"): 0o755, filepath.Join(lib, "images", "layers", "sha256"): 0o755,
			filepath.Join(lib, "containers"): 0o755, filepath.Join(lib, "containers", id): 0o755,
			filepath.Join(l.dir, "run"): 0o755, filepath.Join(l.dir, "run", "containers"): 0o755,
			filepath.Join(l.dir, "run", "containers", id): 0o755}
		for p, m := range old {
			if err := os.Chmod(p, m); err != nil {
				t.Fatal(err)
			}
		}
		// The attack works on such a store (the test can see a breach).
		if got := attackFiles(paths[:1]); len(got) == 0 {
			t.Fatalf("with the old modes, nobody could not stat %s either: the test cannot tell a breach", paths[0])
		}
		l.start()
		if got := attackFiles(paths); len(got) > 0 {
			t.Errorf("after an agent start on an open store, an unprivileged host user still reached:\n%s", strings.Join(got, "\n"))
		}
		for p := range old {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v after the agent started (%v), want 0700", p, fi.Mode().Perm(), err)
			}
		}
		if out := l.must("exec", id, "cat", "/secret"); out != "secret\n" {
			t.Errorf("after the upgrade, the container reads %q from /secret, want secret", out)
		}
	})
}

// TestSocketGroup: the API socket is root's alone by default; with --socket-group a member of that
// group can use it and a user outside it cannot, the socket being 0660 root:GROUP and the run
// directory 0710 root:GROUP.
func TestSocketGroup(t *testing.T) {
	l := newLab(t)
	openLabDir(t, l)
	const gid = "4242" // a GID no account on the machine has: the test needs no /etc/group entry
	bin := t.TempDir()
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(bin, "ovctl")
	data, err := os.ReadFile(l.ctlBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ctl, data, 0o755); err != nil {
		t.Fatal(err)
	}
	connect := func(groups ...string) error {
		out, err := asNobody(groups, ctl, "--socket", l.sock, "version")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := connect(gid); err == nil {
		t.Errorf("without --socket-group, nobody in group %s used the API socket", gid)
	}

	l.term()
	l.startWith("--socket-group", gid)
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{l.sock, os.ModeSocket | 0o660}, {filepath.Join(l.dir, "run"), os.ModeDir | 0o710}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != c.mode || fmt.Sprint(st.Gid) != gid || st.Uid != 0 {
			t.Errorf("%s: %v %d:%d, want %v 0:%s", c.path, fi.Mode(), st.Uid, st.Gid, c.mode, gid)
		}
	}
	if err := connect(); err == nil {
		t.Errorf("a user outside group %s used the API socket", gid)
	}
	if err := connect("4243"); err == nil {
		t.Errorf("a user in group 4243, not %s, used the API socket", gid)
	}
	if err := connect(gid); err != nil {
		t.Errorf("a member of group %s could not use the API socket: %v", gid, err)
	}
	// Members reach the socket, nothing else in the run directory.
	if out, err := asNobody([]string{gid}, "ls", filepath.Join(l.dir, "run")); err == nil {
		t.Errorf("a member of the socket group listed the run directory: %s", out)
	}
	if out, err := asNobody([]string{gid}, "ls", filepath.Join(l.dir, "run", "containers")); err == nil {
		t.Errorf("a member of the socket group listed the bundles: %s", out)
	}

	// A bad group is refused with the fix named, and the agent does not start.
	out, err := exec.Command(l.agentBin, "--root", filepath.Join(l.dir, "lib2"), "--run-dir", filepath.Join(l.dir, "run2"),
		"--socket-group", "no-such-group-ov").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no-such-group-ov") || !strings.Contains(string(out), "groupadd") {
		t.Errorf("ovagent --socket-group no-such-group-ov: %v %q, want an error naming the group and groupadd", err, out)
	}
	out, err = exec.Command(l.agentBin, "--root", filepath.Join(l.dir, "lib2"), "--run-dir", filepath.Join(l.dir, "run2"),
		"--socket-group", gid, "--socket-mode", "0600").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "0660") {
		t.Errorf("ovagent --socket-group %s --socket-mode 0600: %v %q, want an error saying to use 0660", gid, err, out)
	}
}
