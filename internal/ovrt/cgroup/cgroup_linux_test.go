package cgroup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/testutil"
)

// realCgroup creates a cgroup below a parent unique to this test on the host's real hierarchies,
// and removes both (killing whatever is left) when the test ends.
func realCgroup(t *testing.T, l layout, res *specs.LinuxResources) *Cgroup {
	t.Helper()
	testutil.RequireRoot(t)
	parent := "/" + testutil.UniqueName("ovtest")
	t.Cleanup(func() {
		// Also when New failed half-way: the parent and anything below it go.
		p := &Cgroup{path: parent, layout: l}
		_ = p.Kill()
		if err := p.Delete(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	c, err := newWithLayout(l, Config{Path: parent + "/c", Resources: res})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func hostLayout(t *testing.T) layout {
	t.Helper()
	testutil.RequireRoot(t)
	l, err := detect()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// startIn starts busybox sh -c script, waiting on its stdin until the process is in c, and returns
// the command with its combined output buffer.
func startIn(t *testing.T, c *Cgroup, script string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	if _, err := os.Stat(testutil.BusyboxPath); err != nil {
		testutil.Skipf(t, "needs %s (Debian package busybox-static)", testutil.BusyboxPath)
	}
	cmd := exec.Command(testutil.BusyboxPath, "sh", "-c", "read go; "+script)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd.WaitDelay = 5 * time.Second
	t.Cleanup(func() { _ = c.Kill(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := c.Add(cmd.Process.Pid); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	_ = stdin.Close()
	return cmd, out
}

func inCgroup(t *testing.T, pid int, c *Cgroup) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if f[2] != c.path {
			t.Errorf("/proc/%d/cgroup: hierarchy %q puts it in %q, want %q", pid, f[1], f[2], c.path)
		}
	}
}

func TestHostLimitsApplied(t *testing.T) {
	l := hostLayout(t)
	if l.mode == V2 {
		testutil.NotApplicable(t, "host is pure v2: v2 files are covered by TestV2Resources and TestV2Real")
	}
	c := realCgroup(t, l, &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20)), Reservation: ptr(int64(32 << 20)), Swap: ptr(int64(64 << 20))},
		CPU:    &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(50000)), Period: ptr(uint64(100000)), Cpus: "0", Mems: "0"},
		Pids:   &specs.LinuxPids{Limit: ptr(int64(30))},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: ptr(int64(1)), Minor: ptr(int64(3)), Access: "rwm"},
		},
	})
	want := map[string]string{
		"memory/memory.limit_in_bytes":      "67108864",
		"memory/memory.soft_limit_in_bytes": "33554432",
		"cpu/cpu.shares":                    "512",
		"cpu/cpu.cfs_quota_us":              "50000",
		"cpu/cpu.cfs_period_us":             "100000",
		"cpuset/cpuset.cpus":                "0",
		"pids/pids.max":                     "30",
		"devices/devices.list":              "c 1:3 rwm",
	}
	if exists(c.dir("memory"), "memory.memsw.limit_in_bytes") {
		want["memory/memory.memsw.limit_in_bytes"] = "67108864"
	}
	for k, v := range want {
		ct, name, _ := strings.Cut(k, "/")
		got, err := readFile(c.dir(ct), name)
		if err != nil || got != v {
			t.Errorf("%s/%s = %q, %v; want %q", c.dir(ct), name, got, err, v)
		}
	}
	st, err := c.Stats()
	if err != nil || st.MemoryLimit != 64<<20 || st.PidsLimit != 30 {
		t.Errorf("Stats = %+v, %v; want memory limit 64MiB, pids limit 30", st, err)
	}
	// Update changes a limit in place.
	if err := c.Update(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(-1))}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := readFile(c.dir("pids"), "pids.max"); got != "max" {
		t.Errorf("after Update pids.max = %q, want max", got)
	}
}

func TestHostAddKillDelete(t *testing.T) {
	l := hostLayout(t)
	c := realCgroup(t, l, nil)
	// A shell that keeps forking children: Kill must get those forked while it runs.
	cmd, _ := startIn(t, c, "while true; do sleep 60 & done")
	inCgroup(t, cmd.Process.Pid, c)
	testutil.Eventually(t, 10*time.Second, func() error {
		pids, err := c.Pids()
		if err != nil || len(pids) < 5 {
			return fmt.Errorf("pids %v, %v: waiting for the shell to fork", pids, err)
		}
		return nil
	})
	if err := c.Delete(); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("Delete with processes inside: err = %v, want ErrConflict", err)
	}
	if err := c.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	_ = cmd.Wait() // reap the shell; its children were reparented and are reaped by the subreaper or init
	testutil.Eventually(t, 10*time.Second, func() error {
		pids, err := c.Pids()
		if err != nil || len(pids) > 0 {
			return fmt.Errorf("pids after Kill: %v, %v", pids, err)
		}
		return nil
	})
	if err := c.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, d := range c.dirs() {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Delete %s: %v, want it gone", d, err)
		}
	}
	if _, err := loadWithLayout(l, c.path); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Load after Delete: err = %v, want ErrNotFound", err)
	}
	if err := c.Delete(); err != nil {
		t.Errorf("second Delete: %v, want nil", err)
	}
}

func TestHostPidsLimitStopsForks(t *testing.T) {
	l := hostLayout(t)
	c := realCgroup(t, l, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(5))}})
	// The shell is one task; it tries to start 20 sleepers. busybox sh gives up at the first fork
	// that fails.
	cmd, out := startIn(t, c, `i=0; while [ $i -lt 20 ]; do i=$((i+1)); sleep 60 >/dev/null 2>&1 & done; echo all 20 started`)
	_ = cmd.Wait()
	if text := out.String(); !strings.Contains(text, "can't fork") || strings.Contains(text, "all 20 started") {
		t.Errorf("shell under pids limit 5 said %q; want a failed fork", text)
	}
	st, err := c.Stats()
	if err != nil || st.PidsCurrent != 4 {
		t.Errorf("Stats = %+v, %v; want the 4 sleepers that fit beside the shell", st, err)
	}
	if ev, _ := os.ReadFile(filepath.Join(c.dir("pids"), "pids.events")); keyedValue(string(ev), "max") == 0 {
		t.Errorf("pids.events = %q; want max > 0 (forks refused)", ev)
	}
}

func TestHostOOMKilled(t *testing.T) {
	l := hostLayout(t)
	limit := int64(16 << 20)
	c := realCgroup(t, l, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}})
	if oom, err := c.OOMKilled(); err != nil || oom {
		t.Fatalf("fresh cgroup OOMKilled = %v, %v; want false", oom, err)
	}
	// dd fills a 64MiB buffer, four times the limit.
	cmd, out := startIn(t, c, "dd if=/dev/zero of=/dev/null bs=64M count=1")
	err := cmd.Wait()
	if st, serr := c.Stats(); serr != nil || st.CPUUsage == 0 || st.OOMKills == 0 {
		t.Errorf("Stats = %+v, %v; want CPU time used and an OOM kill counted", st, serr)
	}
	if err == nil {
		t.Fatalf("dd of 64MiB under a 16MiB limit succeeded:\n%s", out)
	}
	oom, err := c.OOMKilled()
	if err != nil || !oom {
		t.Errorf("OOMKilled = %v, %v after dd was killed (%s); want true", oom, err, out)
	}
}

// TestV2Real runs the v2 code on the host's real cgroup2 mount (on a hybrid host it has no
// controllers, but membership, freezing, cgroup.kill and removal are real): a shell that keeps
// forking, moved into a cgroup nested in the container's (as a privileged container may make), is
// killed with all its children, by cgroup.kill or by freezing, and Delete removes both cgroups.
func TestV2Real(t *testing.T) {
	l := hostLayout(t)
	if l.unified == "" {
		testutil.Skip(t, "host has no cgroup2 mount (mount cgroup2, e.g. at /sys/fs/cgroup/unified)")
	}
	for _, tt := range []struct {
		name         string
		noCgroupKill bool
	}{{"cgroup.kill", false}, {"freeze and signal", true}} {
		t.Run(tt.name, func(t *testing.T) {
			c := realCgroup(t, layout{mode: V2, unified: l.unified, noCgroupKill: tt.noCgroupKill}, nil)
			nested := filepath.Join(c.unifiedDir(), "nested")
			if err := os.Mkdir(nested, 0o755); err != nil {
				t.Fatal(err)
			}
			cmd, _ := startIn(t, c, "echo $$ > "+filepath.Join(nested, "cgroup.procs")+"; while true; do sleep 60 & done")
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
			if !strings.Contains(string(b), "0::"+c.path) {
				t.Errorf("/proc/pid/cgroup does not put the shell in %s:\n%s", c.path, b)
			}
			testutil.Eventually(t, 10*time.Second, func() error {
				pids, err := c.Pids()
				if err != nil || len(pids) < 5 || !slices.Contains(pids, cmd.Process.Pid) {
					return fmt.Errorf("pids %v, %v: waiting for the shell %d and its children in the nested cgroup", pids, err, cmd.Process.Pid)
				}
				return nil
			})
			if err := c.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			testutil.Eventually(t, 10*time.Second, func() error {
				if pids, _ := c.Pids(); len(pids) > 0 {
					return fmt.Errorf("pids after Kill: %v", pids)
				}
				return nil
			})
			if err := c.Delete(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(c.unifiedDir()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after Delete: %v", err)
			}
		})
	}
}

// TestV2DeviceFilter attaches the eBPF device filter to a cgroup of the host's cgroup2 hierarchy
// (on a hybrid host too: the kernel runs it beside v1's devices controller) and checks what a
// process inside may open.
func TestV2DeviceFilter(t *testing.T) {
	l := hostLayout(t)
	if l.unified == "" {
		testutil.Skip(t, "host has no cgroup2 mount (mount cgroup2, e.g. at /sys/fs/cgroup/unified)")
	}
	dev := func(allow bool, major, minor int64, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: allow, Type: "c", Major: &major, Minor: &minor, Access: access}
	}
	c := realCgroup(t, layout{mode: V2, unified: l.unified}, &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		dev(true, 1, 3, "rwm"), // null
		dev(true, 1, 5, "r"),   // zero, read only
		dev(true, 1, 7, "rwm"), // full, allowed here ...
		dev(false, 1, 7, ""),   // ... and denied again by a later rule
	}})
	node := filepath.Join(t.TempDir(), "node")
	check := func(name, cmd string) string {
		return fmt.Sprintf("if (%s) >/dev/null 2>&1; then echo %s=ok; else echo %s=denied; fi; ", cmd, name, name)
	}
	cmd, out := startIn(t, c, check("write-null", "echo x >/dev/null")+
		check("read-zero", "head -c 1 /dev/zero")+
		check("write-zero", "echo x >/dev/zero")+
		check("read-full", "head -c 1 /dev/full")+
		check("read-random", "head -c 1 /dev/urandom")+
		check("mknod-null", "mknod "+node+"1 c 1 3")+
		check("mknod-full", "mknod "+node+"2 c 1 7"))
	_ = cmd.Wait()
	got := strings.Fields(out.String())
	want := []string{"write-null=ok", "read-zero=ok", "write-zero=denied", "read-full=denied", "read-random=denied", "mknod-null=ok", "mknod-full=denied"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("device access inside the cgroup:\n got %v\nwant %v", got, want)
	}
	if err := c.Update(&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Update of v2 device rules: err = %v, want ErrInvalidArgument", err)
	}
}

// TestHostFailedNewLeavesNothing: a limit the kernel refuses fails New and removes what New made.
func TestHostFailedNewLeavesNothing(t *testing.T) {
	l := hostLayout(t)
	parent := "/" + testutil.UniqueName("ovtest")
	t.Cleanup(func() { _ = (&Cgroup{path: parent, layout: l}).Delete() })
	_, err := newWithLayout(l, Config{Path: parent + "/c", Resources: &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "4096"}}})
	if err == nil {
		t.Fatal("New with cpuset.cpus 4096 succeeded")
	}
	if !strings.Contains(err.Error(), "cpuset.cpus") {
		t.Errorf("error %q does not name the file it could not write", err)
	}
	c := &Cgroup{path: parent + "/c", layout: l}
	for _, d := range c.dirs() {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("failed New left %s: %v", d, err)
		}
	}
}
