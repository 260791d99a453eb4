package agent

import (
	"strings"
	"testing"
)

// TestRunRmReturnsWhenGone: `run --rm` returns once the container is gone (its network and rootfs
// come down right after, in the background), and nothing a user does next trips over what is still
// coming down: the name is free, a static address and a published host port can be taken again at
// once, the network and the image can be removed. The lab's cleanup then checks that no veth, mount,
// cgroup or rule is left.
func TestRunRmReturnsWhenGone(t *testing.T) {
	l := newLab(t)
	l.must("network", "create", "--subnet", "10.93.0.0/24", "rmnet")
	for i := 0; i < 5; i++ {
		out := l.must("run", "--rm", "--name", "again", "--network", "rmnet", "--ip", "10.93.0.50", "-p", "18093:80",
			"busybox", "ip", "-o", "-4", "addr", "show", "eth0")
		if !strings.Contains(out, "10.93.0.50/24") {
			t.Fatalf("run %d: container had %q; want the static address 10.93.0.50/24", i, out)
		}
	}
	l.mu.Lock()
	l.ips["10.93.0.50"] = true
	l.mu.Unlock()
	if cs := l.ps(true); len(cs) != 0 {
		t.Fatalf("ps -a lists %d containers after run --rm returned; want none", len(cs))
	}
	l.must("run", "--rm", "--network", "rmnet", "busybox", "true")
	l.must("network", "rm", "rmnet")
	l.must("run", "--rm", "busybox", "true")
	l.must("image", "rm", "busybox")
}
