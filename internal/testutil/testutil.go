// Package testutil holds helpers shared by ov's tests: the privileged-test gate, throw-away network
// namespaces, a busybox rootfs built from the busybox-static Debian package, and the skip gates (Skip,
// RequireRoot, RequireBinary) that fail instead of skipping under the strict switch (OV_STRICT=1, set by
// .ci/run). Every skip in ov's tests goes through them. Nothing here is used by production code.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var seq atomic.Uint64

// UniqueName returns a short name (at most 15 bytes, fit for a link) that no other test of this
// process uses: prefix + pid-derived and sequence digits.
func UniqueName(prefix string) string {
	n := fmt.Sprintf("%s%x%x", prefix, os.Getpid()&0xfff, seq.Add(1))
	if len(n) > 15 {
		n = n[len(n)-15:]
	}
	return n
}

// Run runs a command and fails the test with its output when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Netns creates a named network namespace (/run/netns/NAME) with lo up, removed when the test ends.
func Netns(t testing.TB, prefix string) string {
	t.Helper()
	RequireRoot(t)
	name := UniqueName(prefix)
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// InNetns runs a command inside the network namespace only (keeping the host's mounts, unlike
// `ip netns exec`; see shared/NOTES.md) and returns its combined output and error.
func InNetns(ns string, name string, args ...string) (string, error) {
	a := append([]string{"--net=/run/netns/" + ns, name}, args...)
	out, err := exec.Command("nsenter", a...).CombinedOutput()
	return string(out), err
}

// Eventually polls cond every 50ms until it returns nil or the timeout passes, then fails with the
// last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BusyboxPath is where Debian's busybox-static installs the static busybox.
const BusyboxPath = "/bin/busybox"

// BusyboxRootfs builds a minimal rootfs in dir: /bin/busybox plus a link for every applet, and
// /etc/passwd, /etc/group, /tmp, /proc, /sys, /dev. It needs the busybox-static package.
func BusyboxRootfs(t testing.TB, dir string) {
	t.Helper()
	if err := MakeBusyboxRootfs(dir); err != nil {
		t.Fatal(err)
	}
}

// MakeBusyboxRootfs is BusyboxRootfs for callers without a testing.TB (benchmark programs, the demo).
func MakeBusyboxRootfs(dir string) error {
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return fmt.Errorf("busybox rootfs: %w (install the Debian package busybox-static)", err)
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root", "var/www"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(BusyboxPath, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		p := filepath.Join(dir, applet)
		if applet == "bin/busybox" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/bin/busybox", p); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":    "root:x:0:\nnogroup:x:65534:\n",
		"etc/hostname": "busybox\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
