package agent

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/testutil"
)

func TestContainers(t *testing.T) {
	l := newLab(t)

	t.Run("exit codes", func(t *testing.T) {
		cases := []struct {
			name       string
			args       []string
			wantCode   int
			wantStdout string
			wantStderr string
		}{
			{"output and exit status", []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, 3, "out\n", "err\n"},
			{"success", []string{"true"}, 0, "", ""},
			{"command not found", []string{"nosuchcommand"}, 127, "", "executable file not found"},
			{"cannot invoke", []string{"/etc/passwd"}, 126, "", "permission denied"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				out, errs, code := l.ctl(append([]string{"run", "--rm", "--network", "none", "busybox"}, tc.args...)...)
				if code != tc.wantCode {
					t.Fatalf("exit %d, want %d (stderr %q)", code, tc.wantCode, errs)
				}
				if out != tc.wantStdout {
					t.Errorf("stdout %q, want %q", out, tc.wantStdout)
				}
				if !strings.Contains(errs, tc.wantStderr) {
					t.Errorf("stderr %q, want it to contain %q", errs, tc.wantStderr)
				}
			})
		}
		if n := len(l.ps(true)); n != 0 {
			t.Errorf("--rm left %d containers", n)
		}
	})

	t.Run("killed by signal exits 128+n", func(t *testing.T) {
		done := make(chan int, 1)
		go func() {
			_, _, code := l.ctl("run", "--rm", "--name", "victim", "--network", "none", "busybox", "sleep", "60")
			done <- code
		}()
		testutil.Eventually(t, 20*time.Second, func() error {
			var cs []api.Container
			if o, _, code := l.ctl("inspect", "victim"); code != 0 || json.Unmarshal([]byte(o), &cs) != nil || cs[0].State.Status != api.StateRunning {
				return os.ErrNotExist
			}
			return nil
		})
		l.must("kill", "-s", "KILL", "victim")
		select {
		case code := <-done:
			if code != 137 {
				t.Errorf("exit %d, want 137", code)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("run did not return after its container was killed")
		}
	})

	t.Run("stdin", func(t *testing.T) {
		out, errs, code := l.ctlIn("hello from stdin\n", "run", "--rm", "-i", "--network", "none", "busybox", "cat")
		if code != 0 || out != "hello from stdin\n" {
			t.Errorf("got %q (exit %d, stderr %q), want the input echoed", out, code, errs)
		}
	})

	t.Run("terminal", func(t *testing.T) {
		out, errs, code := l.ctl("run", "--rm", "-t", "--network", "none", "busybox", "tty")
		if code != 0 || !strings.Contains(out, "/dev/pts/") {
			t.Errorf("tty printed %q (exit %d, stderr %q), want a pts", out, code, errs)
		}
	})

	t.Run("options reach the process", func(t *testing.T) {
		out := l.must("run", "--rm", "--network", "none", "-e", "FOO=bar", "-w", "/tmp", "-u", "65534:65534", "--hostname", "box",
			"busybox", "sh", "-c", `echo "$FOO $(pwd) $(id -u):$(id -g) $(hostname)"`)
		if out != "bar /tmp 65534:65534 box\n" {
			t.Errorf("got %q", out)
		}
		out = l.must("run", "--rm", "--network", "none", "--read-only", "busybox", "sh", "-c", "touch /x 2>/dev/null && echo writable || echo readonly")
		if out != "readonly\n" {
			t.Errorf("--read-only: got %q", out)
		}
		out = l.must("run", "--rm", "--network", "none", "--cap-drop", "ALL", "busybox", "sh", "-c", "grep CapEff /proc/self/status")
		if !strings.Contains(out, "0000000000000000") {
			t.Errorf("--cap-drop ALL: got %q", out)
		}
		capEff := func(args ...string) uint64 {
			t.Helper()
			out := l.must(append(append([]string{"run", "--rm", "--network", "none"}, args...), "busybox", "sh", "-c", "grep CapEff /proc/self/status")...)
			f := strings.Fields(out)
			v, err := strconv.ParseUint(f[len(f)-1], 16, 64)
			if err != nil {
				t.Fatalf("CapEff %q", out)
			}
			return v
		}
		const capNetAdmin, capSysAdmin, capNetRaw = 1 << 12, 1 << 21, 1 << 13
		if c := capEff(); c&capNetRaw == 0 || c&capNetAdmin != 0 || c&capSysAdmin != 0 {
			t.Errorf("default capabilities %#x: want NET_RAW, not NET_ADMIN or SYS_ADMIN", c)
		}
		if c := capEff("--cap-add", "NET_ADMIN", "--cap-drop", "NET_RAW"); c&capNetAdmin == 0 || c&capNetRaw != 0 {
			t.Errorf("--cap-add NET_ADMIN --cap-drop NET_RAW: %#x", c)
		}
		if c := capEff("--privileged"); c&capSysAdmin == 0 {
			t.Errorf("--privileged: %#x lacks SYS_ADMIN", c)
		}
		// --cpus, seen from the host: the container's cgroup gets a CFS quota of half the period.
		id := l.runD("--network", "none", "--cpus", "0.5", "busybox", "sleep", "60")
		var quota string
		for _, p := range []string{"/sys/fs/cgroup/cpu/ov/" + id + "/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct/ov/" + id + "/cpu.cfs_quota_us", "/sys/fs/cgroup/ov/" + id + "/cpu.max"} {
			if b, err := os.ReadFile(p); err == nil {
				quota = strings.TrimSpace(string(b))
				break
			}
		}
		if quota != "50000" && quota != "50000 100000" {
			t.Errorf("--cpus 0.5: CFS quota %q, want 50000 (of 100000)", quota)
		}
		l.must("rm", "-f", id)
		// Limits, by their effect: a fork past --pids-limit fails, an allocation past --memory is
		// killed (137), the same allocation without a limit succeeds.
		out, errs, _ := l.ctl("run", "--rm", "--network", "none", "--pids-limit", "10", "busybox", "sh", "-c",
			"for i in $(seq 16); do sleep 1 & done; wait")
		if !strings.Contains(out+errs, "can't fork") {
			t.Errorf("--pids-limit 10: sixteen background processes started (%q %q)", out, errs)
		}
		if _, _, code := l.ctl("run", "--rm", "--network", "none", "--memory", "32m", "busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"); code != 137 {
			t.Errorf("--memory 32m: a 200M allocation exited %d, want 137 (OOM kill)", code)
		}
		if _, errs, code := l.ctl("run", "--rm", "--network", "none", "busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"); code != 0 {
			t.Errorf("without --memory a 200M allocation failed: exit %d %q", code, errs)
		}
		host := filepath.Join(l.dir, "vol")
		os.MkdirAll(host, 0o755)
		os.WriteFile(filepath.Join(host, "f"), []byte("from host"), 0o644)
		out = l.must("run", "--rm", "--network", "none", "-v", host+":/data:ro", "busybox", "sh", "-c", "cat /data/f; touch /data/g 2>/dev/null || echo ro")
		if out != "from hostro\n" {
			t.Errorf("-v: got %q", out)
		}
	})

	t.Run("logs exec inspect ps stop rm", func(t *testing.T) {
		id := l.runD("--name", "worker", "--network", "none", "busybox", "sh", "-c", "echo one; echo two >&2; exec sleep 300")
		testutil.Eventually(t, 20*time.Second, func() error {
			out, errs, _ := l.ctl("logs", "worker")
			if out != "one\n" || errs != "two\n" {
				return os.ErrNotExist
			}
			return nil
		})
		if out, errs, _ := l.ctl("logs", "--tail", "1", id[:12]); out+errs != "one\n" && out+errs != "two\n" {
			t.Errorf("logs --tail 1: stdout %q stderr %q, want one line", out, errs)
		}
		if out := l.must("exec", "worker", "sh", "-c", "echo $((6*7))"); out != "42\n" {
			t.Errorf("exec: got %q", out)
		}
		if _, _, code := l.ctl("exec", "worker", "sh", "-c", "exit 9"); code != 9 {
			t.Errorf("exec exit %d, want 9", code)
		}
		if _, _, code := l.ctl("exec", "worker", "nosuch"); code != 127 {
			t.Errorf("exec of a missing command: exit %d, want 127", code)
		}
		if out, _, _ := l.ctlIn("abc", "exec", "-i", "worker", "cat"); out != "abc" {
			t.Errorf("exec -i: got %q", out)
		}
		c := l.inspect("worker")
		if c.ID != id || c.State.Status != api.StateRunning || c.Name != "worker" {
			t.Errorf("inspect: %+v", c)
		}
		found := false
		for _, p := range l.ps(false) {
			found = found || p.ID == id
		}
		if !found {
			t.Errorf("ps does not list the running container")
		}
		if _, errs, code := l.ctl("rm", "worker"); code == 0 || !strings.Contains(errs, "stop it first") {
			t.Errorf("rm of a running container: exit %d, stderr %q; want a refusal", code, errs)
		}
		l.must("stop", "-t", "1", "worker")
		if c := l.inspect("worker"); c.State.Status != api.StateExited || c.State.ExitCode != 137 && c.State.ExitCode != 143 {
			t.Errorf("after stop: %+v", c.State)
		}
		if out := l.must("logs", "worker"); out != "one\n" {
			t.Errorf("logs of an exited container: %q", out)
		}
		l.must("rm", "worker")
		if _, errs, code := l.ctl("inspect", "worker"); code == 0 || !strings.Contains(errs, "no such container") {
			t.Errorf("inspect after rm: exit %d, stderr %q", code, errs)
		}
	})

	t.Run("logs -f follows until exit", func(t *testing.T) {
		l.runD("--name", "counter", "--network", "none", "busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done")
		out := l.must("logs", "-f", "counter")
		if out != "1\n2\n3\n" {
			t.Errorf("logs -f: %q", out)
		}
		l.must("rm", "counter")
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		l.runD("--name", "taken", "--network", "none", "busybox", "sleep", "300")
		before := len(l.ps(true))
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"duplicate name", []string{"run", "-d", "--name", "taken", "--network", "none", "busybox", "true"}, `"taken" is already in use`},
			{"unknown image", []string{"run", "--rm", "nosuchimage:1", "true"}, "nosuchimage"},
			{"malformed -p", []string{"run", "--rm", "-p", "80:abc", "busybox", "true"}, `invalid -p "80:abc"`},
			{"bad name", []string{"run", "--rm", "--name", "a b", "busybox", "true"}, "container name"},
			{"bad memory", []string{"run", "--rm", "--memory", "lots", "busybox", "true"}, "size"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, errs, code := l.ctl(tc.args...)
				if code != 125 {
					t.Errorf("exit %d, want 125", code)
				}
				if !strings.Contains(errs, tc.want) {
					t.Errorf("stderr %q, want it to contain %q", errs, tc.want)
				}
			})
		}
		if after := len(l.ps(true)); after != before {
			t.Errorf("%d containers before, %d after", before, after)
		}
		l.must("rm", "-f", "taken")
	})

	t.Run("images", func(t *testing.T) {
		l.runD("--name", "user", "--network", "none", "busybox", "sleep", "300")
		if _, errs, code := l.ctl("image", "rm", "busybox"); code == 0 || !strings.Contains(errs, "conflict") && !strings.Contains(errs, "in use") && !strings.Contains(errs, "used") {
			t.Errorf("image rm of an image in use: exit %d, stderr %q", code, errs)
		}
		l.must("rm", "-f", "user")
		imagesBefore := l.must("image", "ls", "-o", "json")

		evil := filepath.Join(l.dir, "evil.tar")
		f, _ := os.Create(evil)
		tw := tar.NewWriter(f)
		body := []byte("pwned")
		tw.WriteHeader(&tar.Header{Name: "../../../../../tmp/ov-evil-" + filepath.Base(l.dir), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write(body)
		tw.Close()
		f.Close()
		if _, errs, code := l.ctl("image", "import", evil, "evil:1"); code == 0 || errs == "" {
			t.Errorf("import of a hostile archive: exit %d, stderr %q; want a refusal", code, errs)
		}
		if _, err := os.Stat("/tmp/ov-evil-" + filepath.Base(l.dir)); err == nil {
			os.Remove("/tmp/ov-evil-" + filepath.Base(l.dir))
			t.Errorf("the hostile archive wrote outside the store")
		}
		if _, errs, code := l.ctl("image", "load", "-i", evil); code == 0 || errs == "" {
			t.Errorf("load of a hostile archive: exit %d, stderr %q", code, errs)
		}
		if after := l.must("image", "ls", "-o", "json"); after != imagesBefore {
			t.Errorf("image list changed:\n%s\n%s", imagesBefore, after)
		}
		if out := l.must("image", "ls"); !strings.Contains(out, "busybox") {
			t.Errorf("image ls: %q", out)
		}
	})
}
