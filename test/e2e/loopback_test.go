package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/driver/bridge/spoof"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/ovrt/spec"
	"github.com/ovnet/ov/internal/testutil"
)

// TestOverlayContainerCannotReachHostLoopback is the loopback attack of issue 9 from overlay
// containers, whose gateway is the host's ovgw-<vni> macvlan: a service bound to 127.0.0.1 in host1's
// namespace; a container with default capabilities on host1 crafts frames to its gateway's MAC with
// destination 127.0.0.1 (TCP SYN and UDP), and a container run with --cap-add NET_ADMIN routes
// 127.0.0.0/8 via its gateway and connects with plain sockets; none gets an answer and the service
// sees nothing, with the host's default sysctls and with net.ipv4.conf.all.route_localnet=1 (as
// kube-proxy sets it, so that only ov's raw-table guard stands in the way). A port published on
// 127.0.0.1 by a bridge container still answers host1's 127.0.0.1. With OV_TEST_UNPROTECT=loopback
// the test flushes the guard (chain OV-LOOPBACK) in host1 first and must fail.
func TestOverlayContainerCannotReachHostLoopback(t *testing.T) {
	l := sharedLab(t)
	h, err := l.Host("host1")
	if err != nil {
		t.Fatal(err)
	}
	hostNS := "/run/netns/" + h.Netns
	if out, err := l.Exec("host1", "iptables", "-t", "raw", "-S", "OV-LOOPBACK"); err != nil || !strings.Contains(out, "-d 127.0.0.0/8") || !strings.Contains(out, "! -i lo") || !strings.Contains(out, "-j DROP") {
		t.Fatalf("host1 has no loopback guard (iptables -t raw -S OV-LOOPBACK): %v\n%s", err, out)
	}
	var seen atomic.Int64
	port := loopbackService(t, hostNS, &seen)

	networkOn(t, l, "lbk", "--subnet", "10.61.0.0/24")
	evil := runOn(t, l, "host1", "lbk-evil", "lbk", "sleep", "100000")
	ctl(t, l, "host1", "run", "-d", "--name", "lbk-admin", "--cap-add", "NET_ADMIN", "--network", "lbk", "busybox", "sleep", "100000")
	t.Cleanup(func() { _, _ = ctlOut(l, "host1", "rm", "-f", "lbk-admin") })
	admin := inspect(t, l, "host1", "lbk-admin")
	var gw netip.Addr
	for _, ep := range inspect(t, l, "host1", "lbk-evil").Networks {
		if ep.Network == "lbk" {
			gw, _ = netip.ParseAddr(ep.Gateway)
		}
	}
	if !gw.IsValid() {
		t.Fatalf("container lbk-evil has no gateway on network lbk")
	}
	ctl(t, l, "host1", "run", "-d", "--name", "lbk-web", "-p", "127.0.0.1:8089:80", "busybox", "httpd", "-f", "-p", "80", "-h", "/var/www")
	t.Cleanup(func() { _, _ = ctlOut(l, "host1", "rm", "-f", "lbk-web") })
	inspect(t, l, "host1", "lbk-web")

	legit := func(t *testing.T) {
		testutil.Eventually(t, 10*time.Second, func() error {
			out, err := l.Exec("host1", "timeout", "5", "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8089/")
			if err != nil || !strings.Contains(out, "hello from ov") {
				return fmt.Errorf("host1's 127.0.0.1 -> port published on 127.0.0.1:8089: %v %q", err, out)
			}
			return nil
		})
	}
	attack := func(t *testing.T) {
		for _, proto := range []int{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			before := seen.Load()
			answered, err := rawKnock(evil.NetNS, gw, proto, port)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			if answered || seen.Load() != before {
				t.Errorf("default caps, crafted frame (proto %d) to the gateway's MAC for 127.0.0.1:%d reached host1's service (answered %v, service saw %d)", proto, port, answered, seen.Load()-before)
			}
		}
		before := seen.Load()
		answered, err := routeAndConnect(admin.NetNS, gw, port)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if answered || seen.Load() != before {
			t.Errorf("NET_ADMIN, route 127.0.0.0/8 via the gateway reached host1's service (answered %v, service saw %d)", answered, seen.Load()-before)
		}
	}
	if os.Getenv("OV_TEST_UNPROTECT") == "loopback" {
		// After the containers are up: attaching a container with published ports rewrites the rules.
		t.Logf("OV_TEST_UNPROTECT=loopback: flushing OV-LOOPBACK on host1; the attacks must succeed and this test fail")
		if out, err := l.Exec("host1", "iptables", "-t", "raw", "-F", "OV-LOOPBACK"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	t.Run("legitimate", legit)
	t.Run("default sysctls", attack)
	t.Run("all.route_localnet=1", func(t *testing.T) {
		if out, err := l.Exec("host1", "sysctl", "-w", "net.ipv4.conf.all.route_localnet=1"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		defer func() { _, _ = l.Exec("host1", "sysctl", "-w", "net.ipv4.conf.all.route_localnet=0") }()
		legit(t)
		attack(t)
	})
}

// loopbackService listens on 127.0.0.1 (TCP and UDP, one port) in the namespace at ns, counts what
// reaches it and answers it; it returns the port.
func loopbackService(t *testing.T, ns string, seen *atomic.Int64) uint16 {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := netlink.Do(ns, func() (err error) {
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", ln.Addr().String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seen.Add(1)
			_, _ = c.Write([]byte("secret\n"))
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			seen.Add(1)
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// rawKnock acts as root with default capabilities in the container's namespace: it resolves the
// gateway's MAC with ARP and sends it a frame for 127.0.0.1:port (TCP SYN or UDP); it reports whether
// anything answered (a SYN-ACK is ACKed, so the service would accept).
func rawKnock(netns string, gateway netip.Addr, proto int, port uint16) (answered bool, err error) {
	err = spoof.As(netns, spec.DefaultCapabilities, func() error {
		s, err := spoof.Open("eth0")
		if err != nil {
			return err
		}
		defer s.Close()
		gw, err := s.Resolve(gateway)
		if err != nil {
			return err
		}
		p := spoof.Packet{SrcMAC: s.MAC, DstMAC: gw, Src: s.Addr, Dst: netip.MustParseAddr("127.0.0.1"), Proto: proto,
			SrcPort: uint16(40000 + rand.IntN(20000)), DstPort: port, Flags: spoof.SYN, Seq: rand.Uint32()}
		if proto == unix.IPPROTO_UDP {
			p.Payload = []byte("knock")
		}
		if err := s.Send(p.Frame()); err != nil {
			return err
		}
		reply, ok := s.Wait(1500*time.Millisecond, func(f []byte) bool {
			r, ok := spoof.Parse(f)
			return ok && r.Proto == proto && r.SrcPort == port && r.DstPort == p.SrcPort
		})
		if !ok {
			return nil
		}
		answered = true
		if r, _ := spoof.Parse(reply); proto == unix.IPPROTO_TCP && r.Flags&(spoof.SYN|spoof.ACK) == spoof.SYN|spoof.ACK {
			p.Flags, p.Seq, p.Ack = spoof.ACK, p.Seq+1, r.Seq+1
			return s.Send(p.Frame())
		}
		return nil
	})
	return answered, err
}

// routeAndConnect acts as root with default capabilities and NET_ADMIN in the container's namespace:
// it routes 127.0.0.0/8 out of eth0 via the gateway (local routes removed, route_localnet on eth0)
// and connects to 127.0.0.1:port over TCP and UDP; it reports whether either got an answer.
func routeAndConnect(netns string, gateway netip.Addr, port uint16) (answered bool, err error) {
	caps := append(slices.Clone(spec.DefaultCapabilities), "CAP_NET_ADMIN")
	err = spoof.As(netns, caps, func() error {
		for _, args := range [][]string{
			{"route", "del", "127.0.0.0/8", "dev", "lo", "table", "local"},
			{"route", "del", "127.0.0.1", "dev", "lo", "table", "local"},
			{"route", "replace", "127.0.0.0/8", "via", gateway.String(), "dev", "eth0"},
		} {
			out, err := exec.Command("ip", args...).CombinedOutput()
			if err != nil && !strings.Contains(string(out), "No such process") { // a local route deleted before
				return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/eth0/route_localnet", []byte("1"), 0o644); err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if c, err := net.DialTimeout("tcp4", addr, 2*time.Second); err == nil {
			c.Close()
			answered = true
		}
		c, err := net.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(1500 * time.Millisecond))
		if _, err := c.Write([]byte("knock")); err == nil {
			if _, err := c.Read(make([]byte, 64)); err == nil {
				answered = true
			}
		}
		return nil
	})
	return answered, err
}
