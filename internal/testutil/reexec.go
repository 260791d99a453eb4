package testutil

import (
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// NetnsEnv is the environment variable that tells a test re-run by InsideNetns which namespace it is in.
const NetnsEnv = "OV_TEST_NETNS"

// InsideNetns runs the calling test in a fresh network namespace that plays "the host", so that code
// which works on "the calling process's netns" (netlink, sysctls under /proc/sys/net, the iptables
// binary) touches only that namespace. Use it as the first line of a privileged test:
//
//	ns, inside := testutil.InsideNetns(t)
//	if !inside {
//		return // the test ran in the child; its result is already reported
//	}
//
// In the parent it creates the namespace (removed when the test ends, with everything in it: links,
// routes, iptables rules), re-runs only this test of the test binary under `nsenter --net=`, streams the
// child's output into t's log, fails t if the child failed, and returns inside=false. In the child
// (the whole process inside the namespace) it returns the namespace's name and inside=true.
func InsideNetns(t *testing.T) (ns string, inside bool) {
	t.Helper()
	RequireRoot(t)
	if ns := os.Getenv(NetnsEnv); ns != "" {
		return ns, true
	}
	ns = Netns(t, "h")
	args := []string{"--net=/run/netns/" + ns, os.Args[0], "-test.run", "^" + regexp.QuoteMeta(t.Name()) + "$", "-test.v", "-test.count=1"}
	cmd := exec.Command("nsenter", args...)
	cmd.Env = append(os.Environ(), NetnsEnv+"="+ns)
	out, err := cmd.CombinedOutput()
	t.Logf("child test in netns %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("child test in netns %s failed: %v", ns, err)
	}
	return ns, false
}
