package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
)

func TestNetworks(t *testing.T) {
	l := newLab(t)
	l.must("network", "create", "--subnet", "10.91.1.0/24", "front")
	l.must("network", "create", "-d", "bridge", "--subnet", "10.91.2.0/24", "--gateway", "10.91.2.254", "--ip-range", "10.91.2.128/25", "back")

	l.runD("--name", "a", "--network", "front", "busybox", "sleep", "600")
	l.runD("--name", "b", "--network", "front", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
	l.runD("--name", "c", "--network", "back", "--ip", "10.91.2.200", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
	ipA, ipB, ipC := l.ip("a"), l.ip("b"), l.ip("c")
	if ipC != "10.91.2.200" {
		t.Fatalf("--ip: c has %s", ipC)
	}

	t.Run("same network: ping and TCP", func(t *testing.T) {
		if out, errs, code := l.ctl("exec", "a", "ping", "-c", "1", "-W", "5", ipB); code != 0 {
			t.Fatalf("a cannot ping b (%s): %s %s", ipB, out, errs)
		}
		// b's /etc/hostname is its short ID; fetch it over TCP.
		var got string
		testutil.Eventually(t, 20*time.Second, func() error {
			out, _, code := l.ctl("exec", "a", "wget", "-q", "-O-", "http://"+ipB+"/hostname")
			if code != 0 {
				return fmt.Errorf("wget failed")
			}
			got = out
			return nil
		})
		if want := l.inspect("b").ID[:12] + "\n"; got != want {
			t.Errorf("a fetched %q from b, want %q", got, want)
		}
	})

	t.Run("different networks are isolated", func(t *testing.T) {
		if _, _, code := l.ctl("exec", "c", "ping", "-c", "1", "-W", "1", ipA); code == 0 {
			t.Errorf("c (back) pinged a (front)")
		}
		if _, _, code := l.ctl("exec", "a", "timeout", "3", "wget", "-q", "-O-", "http://"+ipC+"/hostname"); code == 0 {
			t.Errorf("a (front) reached c (back) over TCP")
		}
	})

	t.Run("published port answers from the host", func(t *testing.T) {
		l.runD("--name", "pub", "-p", "18080:80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
		want := l.inspect("pub").ID[:12] + "\n"
		testutil.Eventually(t, 20*time.Second, func() error {
			out, err := l.inNetns("busybox", "wget", "-q", "-O-", "http://127.0.0.1:18080/hostname")
			if err != nil || out != want {
				return fmt.Errorf("got %q %v", out, err)
			}
			return nil
		})
		if _, errs, code := l.ctl("run", "-d", "-p", "18080:80", "busybox", "true"); code != 125 || errs == "" {
			t.Errorf("a second container on the same host port: exit %d, stderr %q", code, errs)
		}
		l.must("rm", "-f", "pub")
	})

	t.Run("host none container modes", func(t *testing.T) {
		out := l.must("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
		if !strings.Contains(out, "ov0") {
			t.Errorf("--network host does not see the host's bridge ov0:\n%s", out)
		}
		out = l.must("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "lo:") {
			t.Errorf("--network none has interfaces besides lo:\n%s", out)
		}
		out = l.must("run", "--rm", "--network", "container:a", "busybox", "ip", "-4", "-o", "addr")
		if !strings.Contains(out, ipA+"/") {
			t.Errorf("--network container:a does not have a's address %s:\n%s", ipA, out)
		}
	})

	t.Run("connect and disconnect", func(t *testing.T) {
		l.must("network", "connect", "back", "a")
		out := l.must("exec", "a", "ip", "-4", "-o", "addr")
		if !strings.Contains(out, "eth1") || !strings.Contains(out, "10.91.2.") {
			t.Fatalf("after connect a has no address on back:\n%s", out)
		}
		if o, errs, code := l.ctl("exec", "a", "ping", "-c", "1", "-W", "5", ipC); code != 0 {
			t.Errorf("after connect a cannot ping c: %s %s", o, errs)
		}
		l.must("network", "disconnect", "back", "a")
		if out := l.must("exec", "a", "ip", "-o", "link"); strings.Contains(out, "eth1") {
			t.Errorf("after disconnect a still has eth1:\n%s", out)
		}
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		netsBefore := l.must("network", "ls", "-o", "json")
		psBefore := len(l.ps(true))
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"overlapping subnet", []string{"network", "create", "--subnet", "10.91.1.128/25", "overlap"}, "overlap"},
			{"duplicate network", []string{"network", "create", "--subnet", "10.91.3.0/24", "front"}, "already exists"},
			{"gateway outside subnet", []string{"network", "create", "--subnet", "10.91.4.0/24", "--gateway", "10.92.0.1", "gw"}, "gateway"},
			{"ip outside the subnet", []string{"run", "-d", "--network", "front", "--ip", "10.99.0.5", "busybox", "true"}, "10.99.0.5"},
			{"ip taken", []string{"run", "-d", "--network", "front", "--ip", ipB, "busybox", "true"}, ipB},
			{"unknown network", []string{"run", "-d", "--network", "nosuchnet", "busybox", "true"}, "nosuchnet"},
			{"network in use", []string{"network", "rm", "front"}, "front"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, errs, code := l.ctl(tc.args...)
				if code == 0 {
					t.Fatalf("succeeded; want an error")
				}
				if !strings.Contains(errs, tc.want) {
					t.Errorf("stderr %q, want it to name %q", errs, tc.want)
				}
			})
		}
		if after := l.must("network", "ls", "-o", "json"); after != netsBefore {
			t.Errorf("networks changed:\n%s\n%s", netsBefore, after)
		}
		if after := len(l.ps(true)); after != psBefore {
			t.Errorf("%d containers before, %d after", psBefore, after)
		}
	})

	t.Run("rm cleans up and networks can go", func(t *testing.T) {
		l.must("rm", "-f", "a", "b", "c")
		if out, _ := l.inNetns("ip", "-o", "link", "show", "type", "veth"); strings.TrimSpace(out) != "" {
			t.Errorf("veths left after rm:\n%s", out)
		}
		l.must("network", "rm", "front", "back")
		if out := l.must("network", "ls"); strings.Contains(out, "front") || strings.Contains(out, "back") {
			t.Errorf("network ls after rm:\n%s", out)
		}
	})
}

func TestAgentRestart(t *testing.T) {
	l := newLab(t)
	l.runD("--name", "srv", "-p", "18081:80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
	l.runD("--name", "tick", "busybox", "sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done")
	l.runD("--name", "short", "--network", "none", "busybox", "sleep", "600")
	shortPid := l.inspect("short").State.Pid
	srvID := l.inspect("srv").ID
	ipSrv := l.ip("srv")
	fetch := func() error {
		out, err := l.inNetns("busybox", "wget", "-q", "-O-", "http://127.0.0.1:18081/hostname")
		if err != nil || out != srvID[:12]+"\n" {
			return fmt.Errorf("got %q %v", out, err)
		}
		return nil
	}
	testutil.Eventually(t, 20*time.Second, fetch)

	l.kill9()
	// While the agent is down the containers run on; one of them exits meanwhile.
	if out, err := l.inNetns("busybox", "wget", "-q", "-O-", "http://"+ipSrv+"/hostname"); err != nil || out != srvID[:12]+"\n" {
		t.Errorf("srv does not answer while the agent is down: %q %v", out, err)
	}
	if err := syscall.Kill(shortPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill short's init %d: %v", shortPid, err)
	}
	l.start()

	running := map[string]bool{}
	for _, c := range l.ps(false) {
		running[c.Name] = true
	}
	if !running["srv"] || !running["tick"] || running["short"] {
		t.Fatalf("after the restart ps shows %v, want srv and tick running and short not", running)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if st := l.inspect("short").State; st.Status != "exited" || st.ExitCode != 137 {
			return fmt.Errorf("short: %+v, want exited with 137", st)
		}
		return nil
	})
	testutil.Eventually(t, 20*time.Second, fetch)
	out := l.must("logs", "tick")
	if !strings.HasPrefix(out, "tick 0\n") {
		t.Errorf("logs after the restart: %q", out)
	}
	// The shim goes on logging: new lines arrive after the restart.
	testutil.Eventually(t, 20*time.Second, func() error {
		if n := strings.Count(l.must("logs", "tick"), "\n"); n <= strings.Count(out, "\n") {
			return fmt.Errorf("still %d lines", n)
		}
		return nil
	})
	if out := l.must("exec", "srv", "cat", "/etc/hostname"); out != srvID[:12]+"\n" {
		t.Errorf("exec after the restart: %q", out)
	}
	// A graceful stop (SIGTERM) leaves the containers running too.
	l.term()
	if _, err := os.Stat(l.sock); err == nil {
		t.Errorf("the API socket is still there after SIGTERM")
	}
	l.start()
	if c := l.inspect("srv"); c.State.Status != "running" {
		t.Errorf("after SIGTERM and a restart srv is %s", c.State.Status)
	}
	testutil.Eventually(t, 20*time.Second, fetch)
	l.must("stop", "-t", "1", "tick")
	l.must("rm", "-f", "srv", "tick", "short")
	if n := len(l.ps(true)); n != 0 {
		t.Errorf("%d containers left after rm -f", n)
	}
}

// TestAgentPrunesOrphans leaves what a crash in the middle of a remove leaves (the directory marked
// as being removed, the record gone) while the agent is down: the restarted agent finishes the remove
// of the orphan's container, shim, veth, address, namespace and rootfs, which the lab's leak checks
// verify. (A record lost without the mark is quarantined instead: see crash_test.go.)
func TestAgentPrunesOrphans(t *testing.T) {
	l := newLab(t)
	id := l.runD("--name", "orphan", "-p", "18082:80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
	ip := l.ip("orphan")
	l.kill9()
	dir := filepath.Join(l.dir, "lib", "containers", id)
	if err := os.WriteFile(filepath.Join(dir, "removing"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "container.json")); err != nil {
		t.Fatal(err)
	}
	l.start()
	if n := len(l.ps(true)); n != 0 {
		t.Fatalf("ps -a lists %d containers, want none", n)
	}
	if out, _ := l.inNetns("ip", "-o", "link", "show", "type", "veth"); strings.TrimSpace(out) != "" {
		t.Errorf("the orphan's veth is left:\n%s", out)
	}
	if out, _ := l.inNetns("iptables-save"); strings.Contains(out, ip+"/") || strings.Contains(out, ip+":") {
		t.Errorf("rules naming the orphan's address %s are left", ip)
	}
	if _, err := os.Stat(filepath.Join(l.dir, "run", "netns", id)); err == nil {
		t.Errorf("the orphan's network namespace is left")
	}
	// The address and the host port are free again.
	l.runD("--name", "heir", "-p", "18082:80", "--ip", ip, "busybox", "sleep", "300")
}
