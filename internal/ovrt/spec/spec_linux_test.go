package spec

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/ovrt/cgroup"
	"github.com/ovnet/ov/internal/testutil"
)

// TestDefaultRunsUnderRunc runs Default's spec with Debian's runc, the reference runtime, and
// checks from inside the container what Docker users rely on: the capability set, masked and
// read-only /proc paths, seccomp refusing mount, the hostname, and a network namespace with lo
// only. It checks the spec, independent of ov's own runtime.
func TestDefaultRunsUnderRunc(t *testing.T) {
	testutil.RequireRoot(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		testutil.Skip(t, "needs runc (Debian package runc) as the reference runtime")
	}
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle")
	testutil.BusyboxRootfs(t, filepath.Join(bundle, "rootfs"))
	cg := "/" + testutil.UniqueName("ovspec")
	t.Cleanup(func() {
		if c, err := cgroup.Load(cg); err == nil {
			_ = c.Kill()
			_ = c.Delete()
		}
	})
	script := `grep CapEff /proc/self/status
for p in /proc/interrupts /proc/keys /proc/timer_list /proc/acpi /sys/firmware; do
	if [ -d $p ]; then echo masked$p=$(ls -A $p | wc -l); elif [ -e $p ]; then echo masked$p=$(wc -c < $p); fi
done
if (echo x > /proc/sysrq-trigger) 2>/dev/null; then echo sysrq=writable; else echo sysrq=readonly; fi
if mount -t tmpfs none /tmp 2>/dev/null; then echo mount=allowed; else echo mount=refused; fi
echo hostname=$(hostname)
echo links=$(ls /sys/class/net | tr '\n' ,)
echo nofile=$(ulimit -n)`
	s, err := Default(Options{ID: "specrunc01234567", Args: []string{"/bin/sh", "-c", script}, CgroupsPath: cg + "/c"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(runc, "--root", filepath.Join(dir, "state"), "run", "--bundle", bundle, testutil.UniqueName("spec")).CombinedOutput()
	if err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	got := string(out)
	want := []string{
		"CapEff:\t00000000a80425fb", "sysrq=readonly", "mount=refused",
		"hostname=specrunc0123", "links=lo,", "nofile=1024",
	}
	// Masked paths the host has read as empty inside (the others do not exist there either).
	for _, p := range []string{"/proc/interrupts", "/proc/keys", "/proc/timer_list", "/proc/acpi", "/sys/firmware"} {
		if _, err := os.Stat(p); err == nil {
			want = append(want, "masked"+p+"=0")
		}
	}
	for _, want := range want {
		if !strings.Contains(got, want) {
			t.Errorf("container output lacks %q:\n%s", want, got)
		}
	}
}
