package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovnet/ov/api"

	"github.com/ovnet/ov/internal/testutil"
)

// hostState reads a host's state from `ovctl node ls -o json` on host1.
func hostState(out string, host string) string {
	var hosts []api.Host
	if err := json.Unmarshal([]byte(out), &hosts); err != nil {
		return "unreadable node ls output: " + err.Error()
	}
	for _, h := range hosts {
		if h.Name == host {
			return h.State
		}
	}
	return ""
}

// TestHostLoss: a host that dies (agent killed, cable pulled) is noticed through gossip and every other
// host withdraws its entries; traffic among the others goes on; when it comes back, everything converges
// with no manual step.
func TestHostLoss(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "loss", "--subnet", "10.70.0.0/24")
	vni := vniOf(t, l, "loss")
	a := runOn(t, l, "host1", "loss-a", "loss", "sleep", "100000")
	b := runOn(t, l, "host2", "loss-b", "loss", "sleep", "100000")
	c := runOn(t, l, "host3", "loss-c", "loss", "sleep", "100000")
	h2, h3 := l.Hosts[1].Addr, l.Hosts[2].Addr
	all := []string{mac(b.IP) + " dst " + h2, mac(c.IP) + " dst " + h3, "00:00:00:00:00:00 dst " + h2, "00:00:00:00:00:00 dst " + h3}
	allNeigh := []string{b.IP + " " + mac(b.IP) + " PERMANENT", c.IP + " " + mac(c.IP) + " PERMANENT"}
	testutil.Eventually(t, 10*time.Second, func() error { return expectEntries(l, "host1", vni, all, allNeigh) })
	if err := ping(l, a, c.IP); err != nil {
		t.Fatal(err)
	}

	if err := l.KillAgent("host3", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := l.Partition("host3"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = l.Heal(context.Background(), "host3")
		_ = l.StartAgent(context.Background(), "host3")
	})
	start := time.Now()
	testutil.Eventually(t, 20*time.Second, func() error {
		return expectEntries(l, "host1", vni, []string{mac(b.IP) + " dst " + h2, "00:00:00:00:00:00 dst " + h2}, allNeigh[:1])
	})
	t.Logf("host3's entries withdrawn on host1 %v after its death", time.Since(start).Round(10*time.Millisecond))
	if err := ping(l, a, b.IP); err != nil {
		t.Fatalf("traffic between the surviving hosts: %v", err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		out := ctl(t, l, "host1", "node", "ls", "-o", "json")
		if s := hostState(out, "host3"); s != "dead" {
			return fmt.Errorf("node ls shows host3 as %q, want dead:\n%s", s, out)
		}
		return nil
	})

	if err := l.Heal(context.Background(), "host3"); err != nil {
		t.Fatal(err)
	}
	if err := l.StartAgent(context.Background(), "host3"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error { return expectEntries(l, "host1", vni, all, allNeigh) })
	testutil.Eventually(t, 10*time.Second, func() error { return ping(l, a, c.IP) })
	testutil.Eventually(t, 20*time.Second, func() error {
		out := ctl(t, l, "host1", "node", "ls", "-o", "json")
		if s := hostState(out, "host3"); s != "alive" {
			return fmt.Errorf("node ls shows host3 as %q after it came back, want alive", s)
		}
		return nil
	})
}

// TestControllerLoss: with the controller down, existing containers keep talking across hosts,
// `ovctl run` on an overlay network fails fast with a clear message while bridge and none keep
// working, and everything converges when the controller returns.
func TestControllerLoss(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "cl", "--subnet", "10.71.0.0/24")
	a := runOn(t, l, "host1", "cl-a", "cl", "sleep", "100000")
	b := runOn(t, l, "host2", "cl-b", "cl", "sleep", "100000")
	if err := ping(l, a, b.IP); err != nil {
		t.Fatal(err)
	}
	if err := l.StopController(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.StartController(context.Background()) })

	time.Sleep(3 * time.Second) // a resync of every agent happens meanwhile: nothing may be withdrawn
	if err := ping(l, a, b.IP); err != nil {
		t.Fatalf("existing containers stopped talking without the controller: %v", err)
	}
	cmd, _ := l.Ctl("host1", "run", "--rm", "--network", "cl", "busybox", "true")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 125 {
		t.Fatalf("ovctl run on an overlay network without the controller: %v, want exit code 125\n%s", err, out)
	}
	if !strings.Contains(string(out), "controller") {
		t.Fatalf("the error does not name the controller:\n%s", out)
	}
	t.Logf("ovctl run on the overlay failed after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(string(out)))
	for _, netw := range []string{"bridge", "none"} {
		if out, err := ctlOut(l, "host1", "run", "--rm", "--network", netw, "busybox", "true"); err != nil {
			t.Fatalf("run on %s without the controller: %v %s", netw, err, out)
		}
	}

	if err := l.StartController(context.Background()); err != nil {
		t.Fatal(err)
	}
	var d container
	testutil.Eventually(t, 20*time.Second, func() error {
		if _, err := ctlOut(l, "host2", "run", "-d", "--name", "cl-d", "--network", "cl", "busybox", "sleep", "100000"); err != nil {
			return err
		}
		return nil
	})
	t.Cleanup(func() { _, _ = ctlOut(l, "host2", "rm", "-f", "cl-d") })
	rec := inspect(t, l, "host2", "cl-d")
	d = container{Host: "host2", Name: "cl-d", IP: rec.Networks[0].IP}
	testutil.Eventually(t, 10*time.Second, func() error { return ping(l, a, d.IP) })
}

// TestAgentRestart: killing a host's agent with SIGKILL and starting it again leaves its containers
// running and cross-host traffic flowing.
func TestAgentRestart(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "ar", "--subnet", "10.72.0.0/24")
	a := runOn(t, l, "host1", "ar-a", "ar", "sleep", "100000")
	b := runOn(t, l, "host2", "ar-b", "ar", "sleep", "100000")
	if err := ping(l, b, a.IP); err != nil {
		t.Fatal(err)
	}
	// 30 pings, 100 ms apart, from b to a while host1's agent is killed and restarted.
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := l.Exec("host2", "nsenter", "--net="+b.NetNS, "ping", "-c", "30", "-i", "0.1", "-W", "1", a.IP)
		done <- result{out, err}
	}()
	time.Sleep(500 * time.Millisecond)
	if err := l.KillAgent("host1", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := l.StartAgent(context.Background(), "host1"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if !strings.Contains(r.out, " 0% packet loss") {
		t.Fatalf("traffic to host1's container was interrupted by the agent restart: %v\n%s", r.err, r.out)
	}
	out := ctl(t, l, "host1", "ps")
	if !strings.Contains(out, "ar-a") || !strings.Contains(out, "Up") {
		t.Fatalf("ps after the restart does not show ar-a running:\n%s", out)
	}
	if err := ping(l, a, b.IP); err != nil {
		t.Fatal(err)
	}
}

// TestGateway: an overlay container reaches an address outside the cluster through its host's
// gateway, unless the network is internal.
func TestGateway(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "gw", "--subnet", "10.73.0.0/24")
	networkOn(t, l, "gwint", "--subnet", "10.74.0.0/24", "--internal")
	out := runOn(t, l, "host2", "gw-out", "gw", "sleep", "100000")
	in := runOn(t, l, "host2", "gw-in", "gwint", "sleep", "100000")
	ext := l.Config.External.String()
	if err := ping(l, out, ext); err != nil {
		t.Fatalf("a container on a non-internal overlay network cannot reach %s outside the cluster: %v", ext, err)
	}
	if err := ping(l, in, ext); err == nil {
		t.Fatalf("a container on an internal overlay network reached %s outside the cluster", ext)
	}
}
