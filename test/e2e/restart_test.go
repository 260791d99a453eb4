package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/testutil"
)

// TestRestartOnOverlay: a container on an overlay network restarted by its policy, then stopped and
// started by the user, keeps its overlay address, and a container on another host finds it by name
// and reaches it again each time (docs/restart.md).
func TestRestartOnOverlay(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "rsov", "--subnet", "10.97.0.0/24")
	// web exits 1 when told to (a file it waits for), and its policy starts it again.
	web := dnsRun(t, l, "host1", "rweb", "rsov", []string{"--restart", "on-failure"}, "busybox",
		"sh", "-c", "while [ ! -e /quit ]; do sleep 0.2; done; rm /quit; exit 1")
	client := dnsRun(t, l, "host2", "rclient", "rsov", nil, "busybox", sleeper...)
	reachable := func() error {
		if err := expectA(client, "rweb", web.IP); err != nil {
			return err
		}
		return ping(l, client, "rweb")
	}
	testutil.Eventually(t, 20*time.Second, reachable)

	if _, err := execIn(l, web, "touch", "/quit"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		c := inspect(t, l, "host1", "rweb")
		if c.State.Status != api.StateRunning || c.RestartCount != 1 {
			return fmt.Errorf("rweb %s with RestartCount %d; want running again after 1 restart", c.State.Status, c.RestartCount)
		}
		if ip := endpointIP(t, l, "host1", "rweb", "rsov"); ip != web.IP {
			return fmt.Errorf("rweb has %s after its restart, want %s", ip, web.IP)
		}
		return nil
	})
	testutil.Eventually(t, 20*time.Second, reachable)

	ctl(t, l, "host1", "stop", "-t", "1", "rweb")
	testutil.Eventually(t, 20*time.Second, func() error { return expectNX(client, "rweb") })
	ctl(t, l, "host1", "start", "rweb")
	if ip := endpointIP(t, l, "host1", "rweb", "rsov"); ip != web.IP {
		t.Fatalf("rweb has %s after start, want %s", ip, web.IP)
	}
	testutil.Eventually(t, 20*time.Second, reachable)
	if c := inspect(t, l, "host1", "rweb"); c.State.Status != api.StateRunning || c.RestartCount != 0 {
		t.Errorf("rweb after start: %s, RestartCount %d; want running, count cleared", c.State.Status, c.RestartCount)
	}
}
