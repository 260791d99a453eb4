package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
)

// nodeLs reads one host's record from `ovctl node ls -o json` on host2.
func nodeLs(l *lab.Lab, name string) (api.Host, error) {
	out, err := ctlOut(l, "host2", "node", "ls", "-o", "json")
	if err != nil {
		return api.Host{}, err
	}
	var hosts []api.Host
	if err := json.Unmarshal([]byte(out), &hosts); err != nil {
		return api.Host{}, fmt.Errorf("node ls -o json: %v\n%s", err, out)
	}
	for _, h := range hosts {
		if h.Name == name {
			return h, nil
		}
	}
	return api.Host{}, fmt.Errorf("node ls does not list %s:\n%s", name, out)
}

// poll calls cond every 100ms until it returns nil or timeout passes, and returns its last error.
func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var lossRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (packets )?received`)

// TestAgentStopIsNoOutage: stopping a host's agent (SIGTERM, as for an upgrade) for 30 s cuts none of
// its containers' cross-host traffic: the other hosts keep its entries while its kernel answers their
// probes, and `ovctl node ls` shows the agent dead and the data plane reachable. A host cut off the
// underlay is still withdrawn within 5 s. The agent exits well under a second after SIGTERM, even
// with a client following logs (it took the 5 s shutdown timeout before).
//
// It fails without the data plane probe: OV_DATAPLANE_PROBE=false (the agents' --dataplane-probe
// from the environment) makes host2 withdraw host1 about 2 s into the stop and the pings are lost.
func TestAgentStopIsNoOutage(t *testing.T) {
	l := startLab(t, "ovlive", "192.168.81.0/24", 1500, 2)
	networkOn(t, l, "live", "--subnet", "10.77.0.0/24")
	vni := vniOf(t, l, "live")
	a := runOn(t, l, "host1", "live-a", "live", "sleep", "100000")
	b := runOn(t, l, "host2", "live-b", "live", "sleep", "100000")
	h1 := l.Hosts[0].Addr
	entries := []string{mac(a.IP) + " dst " + h1, "00:00:00:00:00:00 dst " + h1}
	neigh := []string{a.IP + " " + mac(a.IP) + " PERMANENT"}
	testutil.Eventually(t, 10*time.Second, func() error { return expectEntries(l, "host2", vni, entries, neigh) })
	testutil.Eventually(t, 10*time.Second, func() error { return ping(l, b, a.IP) })

	// 100 ms pings from host2's container to host1's for the whole stop (about 35 s).
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := l.Exec("host2", "nsenter", "--net="+b.NetNS, "ping", "-c", "350", "-i", "0.1", "-W", "1", a.IP)
		done <- result{out, err}
	}()
	// A client following logs holds a request open, as operators' terminals do.
	follow, err := l.Ctl("host1", "logs", "-f", "live-a")
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = follow.Process.Kill(); _ = follow.Wait() }()
	time.Sleep(time.Second)
	start := time.Now()
	if err := l.KillAgent("host1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exit := time.Since(start)
	t.Cleanup(func() { _ = l.StartAgent(context.Background(), "host1") })
	t.Logf("host1's agent exited %v after SIGTERM", exit.Round(time.Millisecond))
	if exit > 750*time.Millisecond {
		t.Errorf("host1's agent took %v to exit after SIGTERM with a logs -f client, want well under a second", exit)
	}

	// node ls tells the stopped agent from the data plane, which still forwards.
	if err := poll(20*time.Second, func() error {
		h, err := nodeLs(l, "host1")
		if err != nil {
			return err
		}
		if h.State != api.HostDead || h.Dataplane != api.DataplaneReachable {
			return fmt.Errorf("node ls shows host1 with agent %q and data plane %q (from %v), want agent dead and data plane reachable", h.State, h.Dataplane, h.UnreachableFrom)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if err := expectEntries(l, "host2", vni, entries, neigh); err != nil {
		t.Errorf("host2 withdrew host1's entries %v into the stop of its agent: %v", time.Since(start).Round(time.Second), err)
	}
	time.Sleep(max(0, 30*time.Second-time.Since(start)))
	if err := l.StartAgent(context.Background(), "host1"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	m := lossRE.FindStringSubmatch(r.out)
	if m == nil || m[1] != m[2] {
		t.Fatalf("pings to host1's container while its agent was stopped for 30 s were lost (want 0%% loss): %v\n%s", r.err, r.out)
	}
	t.Logf("%s of %s pings answered across the 30 s stop of host1's agent", m[2], m[1])

	// Cut off, host1 is withdrawn within 5 s, and node ls says who finds it unreachable.
	testutil.Eventually(t, 10*time.Second, func() error {
		h, err := nodeLs(l, "host1")
		if err == nil && h.State != api.HostAlive {
			err = fmt.Errorf("host1's agent is %q after its restart", h.State)
		}
		return err
	})
	if err := l.Partition("host1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Heal(context.Background(), "host1") })
	start = time.Now()
	testutil.Eventually(t, 15*time.Second, func() error { return expectEntries(l, "host2", vni, nil, nil) })
	took := time.Since(start)
	t.Logf("host1's entries withdrawn on host2 %v after it was cut off", took.Round(10*time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("host2 withdrew the cut-off host1's entries after %v, want within 5 s", took)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		h, err := nodeLs(l, "host1")
		if err == nil && (h.Dataplane != api.DataplaneUnreachable || strings.Join(h.UnreachableFrom, ",") != "host2") {
			err = fmt.Errorf("node ls shows the cut-off host1's data plane as %q (from %v), want unreachable from host2", h.Dataplane, h.UnreachableFrom)
		}
		return err
	})
	out := ctl(t, l, "host2", "node", "ls")
	if !strings.Contains(out, "unreachable (from host2)") {
		t.Errorf("node ls does not name who finds host1 unreachable:\n%s", out)
	}
	t.Logf("node ls with host1 cut off:\n%s", out)
}
