package agent

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
)

// compatImage loads "compat:latest", a two-layer image as `docker build` makes it and `docker save`
// writes it: busybox, then a layer with users, groups, a file and a whiteout; a config with ENV,
// WORKDIR, USER, CMD and a label. And "compatep:latest": the same layers with ENTRYPOINT ["echo",
// "ep:"] and CMD ["default"].
func compatImage(t *testing.T, l *lab) {
	t.Helper()
	rootfs := filepath.Join(l.dir, "compatroot")
	testutil.BusyboxRootfs(t, rootfs)
	if err := os.WriteFile(filepath.Join(rootfs, "gone.txt"), []byte("deleted by the next layer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(l.dir, "compat-base.tar")
	testutil.Run(t, "tar", "-C", rootfs, "-cf", base, ".")
	layer1, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	layer2 := tarBytes(t, map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":    "root:x:0:\nwheel:x:10:root\naudio:x:29:app\nvideo:x:44:\napp:x:1000:\n",
		"srv/hello":    "hello from layer 2\n",
		".wh.gone.txt": "",
	}, map[string]bool{"srv/": true, "home/app/": true})
	cfg := func(entrypoint, cmd []string) map[string]any {
		return map[string]any{
			"architecture": "amd64", "os": "linux", "created": "2026-11-30T10:00:00Z",
			"config": map[string]any{
				"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP_MODE=prod"},
				"WorkingDir": "/srv", "User": "app", "Entrypoint": entrypoint, "Cmd": cmd,
				"Labels": map[string]string{"org.example.tier": "web"},
			},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{sha(layer1), sha(layer2)}},
		}
	}
	for _, img := range []struct {
		ref string
		cfg map[string]any
	}{
		{"compat:latest", cfg(nil, []string{"sh", "-c", "echo default-cmd"})},
		{"compatep:latest", cfg([]string{"echo", "ep:"}, []string{"default"})},
	} {
		c, _ := json.Marshal(img.cfg)
		manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{img.ref}, "Layers": []string{"l1/layer.tar", "l2/layer.tar"}}})
		archive := filepath.Join(l.dir, strings.ReplaceAll(img.ref, ":", "_")+".tar")
		if err := os.WriteFile(archive, tarBytes(t, map[string]string{"config.json": string(c), "manifest.json": string(manifest),
			"l1/layer.tar": string(layer1), "l2/layer.tar": string(layer2)}, nil), 0o644); err != nil {
			t.Fatal(err)
		}
		l.must("image", "load", "-i", archive)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// tarBytes makes a tar of files (name -> content) and directories.
func tarBytes(t *testing.T, files map[string]string, dirs map[string]bool) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, Uid: 1000, Gid: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// compatCase is one docker invocation and what Docker gives for it: the exit code, and the output
// (exact, or a part of it with contains) or a part of stderr.
type compatCase struct {
	name     string
	args     []string // after `ovctl`
	stdin    string
	code     int
	out      string // exact stdout ("" with contains: not checked)
	contains string // a part of stdout
	stderr   string // a part of stderr
}

// compatCases are docker invocations with the results Docker documents (docs.docker.com, "docker
// run" reference: exit codes, defaults, ENV/USER/WORKDIR, --entrypoint, groups, mounts).
func compatCases(envFile string) []compatCase {
	run := func(args ...string) []string { return append([]string{"run", "--rm", "--network", "none"}, args...) }
	return []compatCase{
		{name: "image CMD", args: run("compat"), out: "default-cmd\n"},
		{name: "command replaces CMD", args: run("compat", "echo", "hi"), out: "hi\n"},
		{name: "WORKDIR", args: run("compat", "pwd"), out: "/srv\n"},
		{name: "-w", args: run("-w", "/tmp", "compat", "pwd"), out: "/tmp\n"},
		{name: "-w creates the directory", args: run("-w", "/new/dir", "compat", "pwd"), out: "/new/dir\n"},
		{name: "-w relative is refused", args: run("-w", "rel", "compat", "pwd"), code: 125, stderr: "absolute"},
		{name: "USER", args: run("compat", "id", "-u"), out: "1000\n"},
		{name: "-u root", args: run("-u", "root", "compat", "id", "-u"), out: "0\n"},
		{name: "-u uid:gid", args: run("-u", "0:44", "compat", "id", "-g"), out: "44\n"},
		{name: "-u unknown user", args: run("-u", "nosuchuser", "compat", "true"), code: 125, stderr: "nosuchuser"},
		{name: "supplementary groups from /etc/group", args: run("compat", "id", "-G"), out: "1000 29\n"},
		{name: "--group-add name", args: run("--group-add", "video", "compat", "id", "-G"), out: "1000 29 44\n"},
		{name: "--group-add gid", args: run("--group-add", "4242", "compat", "id", "-G"), out: "1000 29 4242\n"},
		{name: "--group-add unknown name", args: run("--group-add", "nosuchgroup", "compat", "true"), code: 125, stderr: "nosuchgroup"},
		{name: "ENV", args: run("compat", "sh", "-c", "echo $APP_MODE"), out: "prod\n"},
		{name: "-e replaces", args: run("-e", "APP_MODE=dev", "compat", "sh", "-c", "echo $APP_MODE"), out: "dev\n"},
		{name: "-e adds", args: run("-e", "NEWVAR=x y", "compat", "sh", "-c", "echo $NEWVAR"), out: "x y\n"},
		{name: "--env-file", args: run("--env-file", envFile, "compat", "sh", "-c", "echo $FROMFILE-$APP_MODE"), out: "file-staging\n"},
		{name: "HOME from /etc/passwd", args: run("compat", "sh", "-c", "echo $HOME"), out: "/home/app\n"},
		{name: "HOSTNAME set", args: run("--hostname", "h1", "compat", "sh", "-c", "echo $HOSTNAME $(hostname)"), out: "h1 h1\n"},
		{name: "--entrypoint", args: run("--entrypoint", "echo", "compat", "hello"), out: "hello\n"},
		{name: "ENTRYPOINT + CMD", args: run("compatep"), out: "ep: default\n"},
		{name: "args replace CMD after ENTRYPOINT", args: run("compatep", "x"), out: "ep: x\n"},
		{name: "--entrypoint replaces ENTRYPOINT and CMD", args: run("--entrypoint", "pwd", "compatep"), out: "/srv\n"},
		{name: "layers and whiteouts", args: run("compat", "sh", "-c", "cat /srv/hello; test -e /gone.txt || echo gone"), out: "hello from layer 2\ngone\n"},
		{name: "exit code", args: run("compat", "sh", "-c", "exit 3"), code: 3},
		{name: "command not found: 127", args: run("compat", "nosuchcommand"), code: 127},
		{name: "not executable: 126", args: run("compat", "/etc/passwd"), code: 126},
		// PID 1 ignores signals it has no handler for (the kernel's rule in a PID namespace): Docker's
		// result too. Under --init the command is not PID 1, and init exits 128+n when it is killed.
		{name: "PID 1 ignores TERM without a handler", args: run("compat", "sh", "-c", "kill -TERM $$; echo alive"), out: "alive\n"},
		{name: "killed by TERM under --init: 143", args: run("--init", "compat", "sh", "-c", "kill -TERM $$"), code: 143},
		{name: "killed by KILL under --init: 137", args: run("--init", "compat", "sh", "-c", "kill -KILL $$"), code: 137},
		{name: "unknown image: 125", args: run("127.0.0.1:1/nosuch:latest", "true"), code: 125, stderr: "Unable to find image"},
		{name: "unknown flag: 125", args: run("--no-such-flag", "compat"), code: 125, stderr: "unknown flag: --no-such-flag"},
		{name: "create: unknown flag: 125", args: []string{"create", "--no-such-flag", "compat"}, code: 125},
		{name: "-i reads stdin", args: run("-i", "compat", "cat"), stdin: "from stdin\n", out: "from stdin\n"},
		{name: "--ulimit", args: run("--ulimit", "nofile=100:200", "compat", "sh", "-c", "ulimit -n; ulimit -Hn"), out: "100\n200\n"},
		{name: "--read-only", args: run("--read-only", "-u", "root", "compat", "touch", "/x"), code: 1},
		{name: "--read-only with --tmpfs", args: run("--read-only", "--tmpfs", "/scratch", "-u", "root", "compat", "sh", "-c", "touch /scratch/x && echo ok"), out: "ok\n"},
		{name: "--tmpfs options as docker", args: run("--tmpfs", "/scratch", "compat", "sh", "-c", "grep ' /scratch ' /proc/mounts"), contains: "rw,nosuid,nodev,noexec"},
		{name: "--mount tmpfs with size", args: run("--mount", "type=tmpfs,target=/m,tmpfs-size=1m", "compat", "sh", "-c", "df -k /m | awk 'NR==2 {print $2}'"), out: "1024\n"},
		{name: "default /dev/shm is 64m", args: run("compat", "sh", "-c", "df -k /dev/shm | awk 'NR==2 {print $2}'"), out: "65536\n"},
		{name: "--add-host", args: run("--add-host", "db.internal:10.1.2.3", "compat", "grep", "db.internal", "/etc/hosts"), contains: "10.1.2.3"},
		{name: "--cap-drop ALL", args: run("--cap-drop", "ALL", "-u", "root", "compat", "grep", "CapEff", "/proc/self/status"), contains: "0000000000000000"},
		{name: "--security-opt no-new-privileges", args: run("--security-opt", "no-new-privileges", "compat", "grep", "NoNewPrivs", "/proc/self/status"), contains: "1"},
		{name: "--security-opt seccomp=unconfined", args: run("--security-opt", "seccomp=unconfined", "compat", "grep", "Seccomp:", "/proc/self/status"), contains: "0"},
		{name: "default seccomp filter", args: run("compat", "grep", "Seccomp:", "/proc/self/status"), contains: "2"},
		{name: "--init is PID 1", args: run("--init", "compat", "cat", "/proc/1/comm"), out: "docker-init\n"},
		{name: "--device", args: run("--device", "/dev/null:/dev/mynull", "compat", "sh", "-c", "test -c /dev/mynull && echo char"), out: "char\n"},
		{name: "--restart with --rm", args: run("--restart", "always", "compat", "true"), code: 125, stderr: "--restart"},
		{name: "--restart bad policy", args: []string{"run", "--restart", "sometimes", "compat", "true"}, code: 125, stderr: "sometimes"},
		{name: "image ls --format", args: []string{"image", "ls", "--format", "{{.Repository}}:{{.Tag}}"}, contains: "compat:latest"},
		{name: "version is text", args: []string{"version"}, contains: "Client:"},
		{name: "version --format", args: []string{"version", "--format", "{{.Server.Os}}"}, out: "linux\n"},
	}
}

// TestDockerCompat runs docker invocations through ovctl and checks the results Docker gives: exit
// codes (125 for ov's own errors, 126/127, 128+n), the image's ENV, USER, WORKDIR, ENTRYPOINT and
// CMD with their overrides, groups, mounts, limits and security options, init, restart, labels,
// formats. docs/run-options.md lists where ov differs from Docker.
func TestDockerCompat(t *testing.T) {
	l := newLab(t)
	compatImage(t, l)
	envFile := filepath.Join(l.dir, "env.list")
	if err := os.WriteFile(envFile, []byte("# comment\nFROMFILE=file\nAPP_MODE=staging\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := compatCases(envFile)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := l.ctlIn(c.stdin, c.args...)
			switch {
			case code != c.code:
				t.Errorf("ovctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(c.args, " "), code, c.code, out, errs)
			case c.out != "" && out != c.out:
				t.Errorf("ovctl %s: stdout %q, want %q (stderr %s)", strings.Join(c.args, " "), out, c.out, errs)
			case c.contains != "" && !strings.Contains(out, c.contains):
				t.Errorf("ovctl %s: stdout %q, want it to contain %q", strings.Join(c.args, " "), out, c.contains)
			case c.stderr != "" && !strings.Contains(errs, c.stderr):
				t.Errorf("ovctl %s: stderr %q, want it to contain %q", strings.Join(c.args, " "), errs, c.stderr)
			}
		})
	}
	t.Run("stateful", func(t *testing.T) { testCompatStateful(t, l) })
	t.Logf("%d invocations plus the stateful ones", len(cases))
}

// testCompatStateful: invocations whose result needs a container that lives: names, labels and
// filters, start of an exited container, volumes, restart counts, stop signals.
func testCompatStateful(t *testing.T, l *lab) {
	id := l.runD("--name", "c1", "--network", "none", "--label", "team=blue", "compat", "sleep", "60")
	if _, errs, code := l.ctl("run", "-d", "--name", "c1", "--network", "none", "compat", "true"); code != 125 || !strings.Contains(errs, "c1") {
		t.Errorf("a second c1: exit %d %q, want 125 naming the name in use", code, errs)
	}
	if out := l.must("ps", "--filter", "label=team=blue", "--format", "{{.Names}}"); out != "c1\n" {
		t.Errorf("ps --filter label=team=blue: %q, want c1", out)
	}
	if out := l.must("ps", "--filter", "label=org.example.tier=web", "-q"); !strings.Contains(out, id[:12]) {
		t.Errorf("the image's label is not the container's (ps --filter label=org.example.tier=web: %q)", out)
	}
	if out := l.must("inspect", "-f", "{{.State.Status}} {{index .Config.Labels \"team\"}}", "c1"); out != "running blue\n" {
		t.Errorf("inspect -f: %q", out)
	}
	l.must("kill", "c1")
	waitExited(t, l, "c1")
	if out := l.must("inspect", "-f", "{{.State.ExitCode}}", "c1"); out != "137\n" {
		t.Errorf("ovctl kill (SIGKILL): exit code %q, want 137", out)
	}
	l.must("rm", "-f", "c1")

	// start of an exited container: same rootfs, output appended to its log
	l.runD("--name", "s1", "--network", "none", "-u", "root", "compat", "sh", "-c", "echo run >> /runs; wc -l < /runs")
	waitExited(t, l, "s1")
	l.must("start", "s1")
	waitExited(t, l, "s1")
	if out := l.must("logs", "s1"); strings.Fields(out)[len(strings.Fields(out))-1] != "2" {
		t.Errorf("logs after start of the exited s1: %q, want the second run to count 2 lines", out)
	}
	l.must("rm", "s1")

	// a named volume outlives its container
	l.must("run", "--rm", "--network", "none", "-u", "root", "-v", "compatvol:/data", "compat", "sh", "-c", "echo kept > /data/f")
	if out := l.must("run", "--rm", "--network", "none", "-v", "compatvol:/data:ro", "compat", "cat", "/data/f"); out != "kept\n" {
		t.Errorf("named volume: %q, want kept", out)
	}
	l.must("volume", "rm", "compatvol")

	// on-failure:2 restarts twice, then stays exited with the last code
	l.runD("--name", "r1", "--network", "none", "--restart", "on-failure:2", "compat", "sh", "-c", "exit 3")
	testutil.Eventually(t, 30*time.Second, func() error {
		if out := l.must("inspect", "-f", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}", "r1"); out != "2 exited 3\n" {
			return fmt.Errorf("restart count, state, exit code: %q, want 2 exited 3", out)
		}
		return nil
	})
	l.must("rm", "-f", "r1")

	// --stop-signal: stop sends it first
	l.runD("--name", "st1", "--network", "none", "--stop-signal", "USR1", "compat", "sh", "-c", "trap 'echo got-usr1; exit 0' USR1; while :; do sleep 0.1; done")
	time.Sleep(300 * time.Millisecond) // the trap is set
	l.must("stop", "st1")
	if out := l.must("logs", "st1"); !strings.Contains(out, "got-usr1") {
		t.Errorf("stop with --stop-signal USR1: logs %q, want got-usr1", out)
	}
	l.must("rm", "st1")
}

func waitExited(t *testing.T, l *lab, name string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		if s := l.inspect(name).State.Status; s != "exited" {
			return fmt.Errorf("%s is %s", name, s)
		}
		return nil
	})
}
