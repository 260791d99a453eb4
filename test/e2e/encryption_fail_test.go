package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
)

// encryptedPair starts an encrypted network with a web server on host1 and a client on host2, waits
// until the transfer works, and returns them with a capture of the underlay between the two hosts.
func encryptedPair(t *testing.T, l *lab.Lab, name, subnet string) (web, cli container, marker string, capture func() underlayStats, vni uint32) {
	t.Helper()
	networkOn(t, l, name, "--subnet", subnet, "--encrypted")
	marker = fmt.Sprintf("ov-%s-%d", name, time.Now().UnixNano())
	web = webServer(t, l, "host1", name+"web", name, marker)
	cli = runOn(t, l, "host2", name+"cli", name, "sleep", "100000")
	dumpOnFailure(t, l, "host1", "host2")
	testutil.Eventually(t, 30*time.Second, func() error { return fetch(l, cli, web.IP, marker) })
	h1, h2 := labHost(t, l, "host1"), labHost(t, l, "host2")
	capture = captureUnderlay(t, l, netip.MustParseAddr(h1.Addr), netip.MustParseAddr(h2.Addr), netip.MustParsePrefix(subnet), marker)
	return web, cli, marker, capture, vniOf(t, l, name)
}

// noCleartext fails the test when the capture saw anything of the encrypted network in clear.
func noCleartext(t *testing.T, st underlayStats, vni uint32) {
	t.Helper()
	t.Logf("underlay between host1 and host2: %s", st)
	if st.vni[vni] != 0 || st.marker != 0 || st.inner != 0 {
		t.Errorf("the encrypted network's traffic crossed the underlay in clear (VNI %d): %s", vni, st)
	}
}

// cannotTalk checks, for a few seconds, that the client gets nothing from the server.
func cannotTalk(t *testing.T, l *lab.Lab, cli, web container, marker string) {
	t.Helper()
	for range 3 {
		if err := fetch(l, cli, web.IP, marker); err == nil {
			t.Errorf("%s fetched from %s while the tunnel was impossible", cli.Name, web.Name)
			return
		}
	}
}

// blockController rejects host's TCP connections to the lab's controller (in the host's namespace),
// until the returned function undoes it.
func blockController(t *testing.T, l *lab.Lab, host string) func() {
	t.Helper()
	u, err := url.Parse(l.ControllerURL)
	if err != nil {
		t.Fatal(err)
	}
	rule := []string{"OUTPUT", "-p", "tcp", "-d", u.Hostname(), "--dport", u.Port(), "-m", "comment", "--comment", "ove2e block controller", "-j", "REJECT"}
	if out, err := l.Exec(host, append([]string{"iptables", "-w", "-I"}, rule...)...); err != nil {
		t.Fatalf("block the controller from %s: %v %s", host, err, out)
	}
	done := false
	undo := func() {
		if !done {
			done = true
			if out, err := l.Exec(host, append([]string{"iptables", "-w", "-D"}, rule...)...); err != nil {
				t.Errorf("unblock the controller from %s: %v %s", host, err, out)
			}
		}
	}
	t.Cleanup(undo)
	return undo
}

// TestEncryptedKeyRevoked: with host1's public key removed from the controller (ovctl node rotate-key
// --revoke) while host1's agent cannot reach the controller to publish a new one, host2 drops its
// tunnel to host1: the containers cannot talk and nothing of the network crosses the underlay in
// clear. Once host1 reaches the controller again, it makes and publishes a new key and the two
// converge by themselves.
func TestEncryptedKeyRevoked(t *testing.T) {
	l := sharedLab(t)
	web, cli, marker, capture, vni := encryptedPair(t, l, "encrev", "10.63.0.0/24")
	old := hostKey(t, l, "host1").WireGuardKey
	unblock := blockController(t, l, "host1")
	ctl(t, l, "host2", "node", "rotate-key", "--revoke", "host1")
	testutil.Eventually(t, 15*time.Second, func() error {
		if fetch(l, cli, web.IP, marker) == nil {
			return errors.New("host2 still talks to host1 through the revoked key")
		}
		return nil
	})
	capture()
	cannotTalk(t, l, cli, web, marker)
	noCleartext(t, capture(), vni)

	unblock()
	testutil.Eventually(t, 30*time.Second, func() error { return fetch(l, cli, web.IP, marker) })
	if k := hostKey(t, l, "host1"); k.WireGuardKey == old || k.WireGuardKey == "" || k.RotateKey {
		t.Errorf("after the revocation host1 publishes %q (rotate request %t); want a new key, request cleared", k.WireGuardKey, k.RotateKey)
	}
	noCleartext(t, capture(), vni)
}

// TestEncryptedTunnelDeleted: with host1's TUN device deleted while its agent is stopped (nothing
// makes it again), the containers cannot talk and nothing of the network crosses the underlay in
// clear (the blackhole route and the output filter hold); once the agent runs again it makes the
// tunnel again and the containers talk.
func TestEncryptedTunnelDeleted(t *testing.T) {
	l := sharedLab(t)
	web, cli, marker, capture, vni := encryptedPair(t, l, "enctun", "10.64.0.0/24")
	h1 := labHost(t, l, "host1")
	pid := h1.Agent.PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	cont := func() {
		if stopped {
			stopped = false
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(cont)
	if out, err := l.Exec("host1", "ip", "link", "del", "ovwg0"); err != nil {
		t.Fatalf("delete ovwg0 on host1: %v %s", err, out)
	}
	capture()
	cannotTalk(t, l, cli, web, marker)
	// From host1's side too (its agent is stopped: straight into the container's namespace).
	if out, err := exec.Command("nsenter", "--net="+web.NetNS, "busybox", "ping", "-c", "3", "-W", "1", cli.IP).CombinedOutput(); err == nil {
		t.Errorf("host1's container pinged host2's with its tunnel deleted:\n%s", out)
	}
	noCleartext(t, capture(), vni)
	cont()
	testutil.Eventually(t, 30*time.Second, func() error { return fetch(l, cli, web.IP, marker) })
	noCleartext(t, capture(), vni)
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)

// TestEncryptedKeyRotation: a key rotation (ovctl node rotate-key) during a ping at 100 ms between
// the two hosts' containers loses at most 2 pings, and the host publishes a new key.
func TestEncryptedKeyRotation(t *testing.T) {
	l := sharedLab(t)
	web, cli, _, capture, vni := encryptedPair(t, l, "encrot", "10.65.0.0/24")
	old := hostKey(t, l, "host1").WireGuardKey
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := execIn(l, cli, "ping", "-i", "0.1", "-c", "80", "-W", "1", "-q", web.IP)
		done <- result{out, err}
	}()
	time.Sleep(time.Second)
	ctl(t, l, "host2", "node", "rotate-key", "host1")
	r := <-done
	m := pingStats.FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("ping: %v\n%s", r.err, r.out)
	}
	sent, got := atoi(m[1]), atoi(m[2])
	t.Logf("key rotation during a ping at 100 ms: %d sent, %d received", sent, got)
	if sent-got > 2 {
		t.Errorf("the key rotation lost %d of %d pings; want at most 2", sent-got, sent)
	}
	if k := hostKey(t, l, "host1"); k.WireGuardKey == old || k.RotateKey {
		t.Errorf("after rotate-key host1 publishes %q (request pending %t); want a new key", api8(k.WireGuardKey), k.RotateKey)
	}
	noCleartext(t, capture(), vni)
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func api8(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
