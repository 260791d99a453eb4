package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
)

// TestPublishOverlay: a web server on an overlay network publishes 8080:80 on host1, and a client on
// the underlay that is not a cluster member (a namespace of its own on the lab's bridge) fetches the
// page at host1's underlay address. Port 81 of the same container, not published, is reachable
// neither through host1's address nor by routing to the container's overlay address through host1.
// As with Docker (whose docker_gwbridge forbids traffic between its containers), a container of
// another overlay network on the same host cannot use the published port to reach into the network,
// while a container of the same network can (hairpin). `ovctl rm -f` removes every rule the port
// added, and after an agent restart (SIGKILL) the port still works with no rule twice.
func TestPublishOverlay(t *testing.T) {
	l := sharedLab(t)
	testutil.RequireBinary(t, "/bin/busybox", "busybox-static")
	networkOn(t, l, "pubnet", "--subnet", "10.75.0.0/24")
	networkOn(t, l, "pubother", "--subnet", "10.76.0.0/24")
	other := runOn(t, l, "host1", "pub-other", "pubother", "sleep", "100000")
	before := pubRules(t, l, "host1")

	web := runWith(t, l, "host1", "pub-web", "pubnet", []string{"-p", "8080:80"}, "busybox",
		"sh", "-c", "httpd -p 81 -h /var/www && exec httpd -f -p 80 -h /var/www")
	peer := runOn(t, l, "host1", "pub-peer", "pubnet", "sleep", "100000")
	h1 := pubHostAddr(t, l, "host1")
	client := pubClient(t, l, 61)
	page := "http://" + h1 + ":8080/"

	testutil.Eventually(t, 10*time.Second, func() error { return pubFetch(client, page) })
	if err := pubFetch(client, "http://"+h1+":81/"); err == nil {
		t.Fatal("the client outside the cluster reached port 81 at host1's address, which no container publishes")
	}
	// A client that routes the overlay subnet through host1 reaches neither port of the container.
	testutil.Run(t, "ip", "-n", client, "route", "add", "10.75.0.0/24", "via", h1)
	for _, port := range []string{"80", "81"} {
		if err := pubFetch(client, "http://"+web.IP+":"+port+"/"); err == nil {
			t.Fatalf("the client outside the cluster reached %s:%s directly, routed through host1: only the published host port may let it in", web.IP, port)
		}
	}
	if out, err := execIn(l, other, "timeout", "5", "wget", "-q", "-O", "-", page); err == nil {
		t.Fatalf("a container of another overlay network on host1 reached the published port through host1's address:\n%s", out)
	}
	if out, err := execIn(l, peer, "timeout", "5", "wget", "-q", "-O", "-", page); err != nil || !strings.Contains(out, "hello from ov") {
		t.Fatalf("a container of the same network cannot reach the published port through host1's address (hairpin): %v\n%s", err, out)
	}
	// The host's own clients: at its underlay address and at localhost (DNAT in OUTPUT).
	for _, u := range []string{page, "http://127.0.0.1:8080/"} {
		if out, err := l.Exec("host1", "timeout", "5", "busybox", "wget", "-q", "-O", "-", u); err != nil || !strings.Contains(out, "hello from ov") {
			t.Fatalf("host1 itself cannot fetch %s: %v\n%s", u, err, out)
		}
	}
	// Host port 8080 is taken on host1, whatever the network or driver of the next container.
	for _, network := range []string{"pubother", "bridge"} {
		out, err := ctlOut(l, "host1", "run", "-d", "--name", "pub-clash", "--network", network, "-p", "8080:80", "busybox", "sleep", "100000")
		if err == nil || !strings.Contains(err.Error(), "already published by container") {
			_, _ = ctlOut(l, "host1", "rm", "-f", "pub-clash")
			t.Fatalf("a second container on %s published host port 8080 on host1: %v\n%s", network, err, out)
		}
	}
	if ps := ctl(t, l, "host1", "ps"); !strings.Contains(ps, "8080:80/tcp") {
		t.Fatalf("ovctl ps does not show the published port:\n%s", ps)
	}
	if c := inspect(t, l, "host1", "pub-web"); len(c.Config.Ports) != 1 || c.Config.Ports[0].HostPort != 8080 {
		t.Fatalf("ovctl inspect does not show the published port: %+v", c.Config.Ports)
	}

	published := pubRules(t, l, "host1")
	if n := pubCount(published, "--dport 8080 ", "-j DNAT"); n != 1 {
		t.Fatalf("%d DNAT rules for host port 8080 on host1, want 1:\n%s", n, strings.Join(published, "\n"))
	}
	pubRestartAgent(t, l, "host1")
	// Two resync periods of the lab's agents (--overlay-resync 2s): the restarted agent's data plane has
	// made its full reconcile, so the rules below are its own, not the ones the killed agent left.
	time.Sleep(5 * time.Second)
	testutil.Eventually(t, 10*time.Second, func() error { return pubFetch(client, page) })
	if after := pubRules(t, l, "host1"); !pubSameRules(after, published) {
		t.Fatalf("the agent restart changed ov's rules on host1:\nbefore:\n%s\nafter:\n%s", strings.Join(published, "\n"), strings.Join(after, "\n"))
	}

	ctl(t, l, "host1", "rm", "-f", "pub-peer", "pub-web")
	testutil.Eventually(t, 10*time.Second, func() error {
		if after := pubRules(t, l, "host1"); !pubSameRules(after, before) {
			return fmt.Errorf("ov's rules on host1 after rm -f differ from before the run (%d rules, were %d):\n%s", len(after), len(before), strings.Join(after, "\n"))
		}
		return nil
	})
	if err := pubFetch(client, page); err == nil {
		t.Fatal("the published port still answers after ovctl rm -f")
	}
}

// pubRules returns ov's iptables rules on a lab host (the iptables-save lines carrying ov's comment).
func pubRules(t *testing.T, l *lab.Lab, host string) []string {
	t.Helper()
	out, err := l.Exec(host, "iptables-save")
	if err != nil {
		t.Fatalf("iptables-save on %s: %v\n%s", host, err, out)
	}
	var rules []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "-A ") && strings.Contains(line, `"ov:`) {
			rules = append(rules, line)
		}
	}
	return rules
}

// pubCount counts the rules that contain every one of subs.
func pubCount(rules []string, subs ...string) int {
	n := 0
	for _, r := range rules {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(r, s)
		}
		if all {
			n++
		}
	}
	return n
}

// pubSameRules compares two rule lists as multisets (a duplicate counts).
func pubSameRules(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, r := range a {
		count[r]++
	}
	for _, r := range b {
		count[r]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// pubHostAddr is a lab host's underlay address.
func pubHostAddr(t *testing.T, l *lab.Lab, name string) string {
	t.Helper()
	h, err := l.Host(name)
	if err != nil {
		t.Fatal(err)
	}
	return h.Addr
}

// pubClient makes a namespace on the lab's underlay bridge with the n-th address of the underlay
// subnet: a machine of the underlay that is no member of the cluster. It goes when the test ends.
func pubClient(t *testing.T, l *lab.Lab, n int) string {
	t.Helper()
	ns := testutil.Netns(t, "ovpc")
	peer := testutil.UniqueName("ovpc")
	testutil.Run(t, "ip", "-n", l.UnderlayNetns, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "-n", l.UnderlayNetns, "link", "del", peer).Run() })
	testutil.Run(t, "ip", "-n", l.UnderlayNetns, "link", "set", peer, "master", l.Bridge, "up")
	testutil.Run(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("%s/%d", underlayAddr(l, n), l.Config.Subnet.Bits()), "dev", "eth0")
	testutil.Run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	return ns
}

// pubFetch gets url from the namespace ns and expects the lab image's page.
func pubFetch(ns, url string) error {
	out, err := testutil.InNetns(ns, "timeout", "5", "busybox", "wget", "-q", "-O", "-", url)
	if err != nil || !strings.Contains(out, "hello from ov") {
		return fmt.Errorf("wget %s from %s: %v %q", url, ns, err, out)
	}
	return nil
}

// pubRestartAgent kills a host's agent with SIGKILL and starts it again.
func pubRestartAgent(t *testing.T, l *lab.Lab, host string) {
	t.Helper()
	if err := l.KillAgent(host, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := l.StartAgent(context.Background(), host); err != nil {
		t.Fatal(err)
	}
}
