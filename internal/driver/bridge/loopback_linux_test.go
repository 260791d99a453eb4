package bridge

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/driver/bridge/spoof"
	"github.com/ovnet/ov/internal/ovrt/spec"
	"github.com/ovnet/ov/internal/testutil"
)

// UnprotectEnv names the protection an attack test runs without, to show that the test fails then:
// OV_TEST_UNPROTECT=loopback go test -run TestLoopbackAttack ./internal/driver/bridge/ must FAIL.
const unprotectEnv = "OV_TEST_UNPROTECT"

// loopbackService is a host service bound to 127.0.0.1 (TCP and UDP, same port number) that counts
// what reaches it: accepted connections and datagrams.
type loopbackService struct {
	port uint16
	seen atomic.Int64
}

func newLoopbackService(t *testing.T) *loopbackService {
	t.Helper()
	s := &loopbackService{}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = uint16(ln.Addr().(*net.TCPAddr).Port)
	pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", s.port))
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
			s.seen.Add(1)
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
			s.seen.Add(1)
			_, _ = pc.WriteTo(append([]byte("secret "), buf[:n]...), from)
		}
	}()
	return s
}

// attacker is a container on a bridge network: its namespace, gateway and capabilities.
type attacker struct {
	netns   string
	gateway netip.Addr
	caps    []string
}

// rawKnock is the attack of a container with NET_RAW: it resolves its gateway's MAC with ARP and sends
// an Ethernet frame to it carrying IPv4 to 127.0.0.1:port (a TCP SYN, or a UDP datagram), from src
// (its own address when invalid). It reports whether anything answered; a TCP SYN-ACK is ACKed, so
// that the service would accept the connection.
func (a attacker) rawKnock(proto int, port uint16, src netip.Addr) (answered bool, err error) {
	err = spoof.As(a.netns, a.caps, func() error {
		s, err := spoof.Open("eth0")
		if err != nil {
			return err
		}
		defer s.Close()
		gw, err := s.Resolve(a.gateway)
		if err != nil {
			return err
		}
		if !src.IsValid() {
			src = s.Addr
		}
		p := spoof.Packet{SrcMAC: s.MAC, DstMAC: gw, Src: src, Dst: netip.MustParseAddr("127.0.0.1"), Proto: proto,
			SrcPort: uint16(40000 + rand.IntN(20000)), DstPort: port, Flags: spoof.SYN, Seq: rand.Uint32(), Payload: []byte("knock")}
		if proto == unix.IPPROTO_TCP {
			p.Payload = nil
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

// routeAndConnect is the attack of a container with NET_ADMIN: it routes 127.0.0.0/8 out of eth0 via
// its gateway (removing the local routes, and allowing 127/8 on eth0 with route_localnet, which it
// can set through rtnetlink even where /proc/sys is read-only) and connects to 127.0.0.1:port with
// plain sockets. It reports whether the TCP connection or a UDP answer came through.
func (a attacker) routeAndConnect(port uint16) (answered bool, err error) {
	err = spoof.As(a.netns, a.caps, func() error {
		for _, args := range [][]string{
			{"route", "del", "127.0.0.0/8", "dev", "lo", "table", "local"},
			{"route", "del", "127.0.0.1", "dev", "lo", "table", "local"},
			{"route", "replace", "127.0.0.0/8", "via", a.gateway.String(), "dev", "eth0"},
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
		if _, err := c.Write([]byte("knock")); err != nil {
			return nil
		}
		if _, err := c.Read(make([]byte, 64)); err == nil {
			answered = true
		}
		return nil
	})
	return answered, err
}

// TestLoopbackAttack is the attack of issue 9 on a host's loopback (the class of Kubernetes'
// CVE-2020-8558), inside a namespace playing the host: a service bound to 127.0.0.1, and containers on
// bridge networks (one with a port published on 127.0.0.1, so its bridge has route_localnet, one
// without) that send to their gateway's MAC with destination 127.0.0.1: with default capabilities
// (NET_RAW: crafted frames, TCP SYN and UDP), and with NET_ADMIN (a route
// for 127.0.0.0/8 via the gateway and plain sockets); and again on a host where
// net.ipv4.conf.all.route_localnet=1 (as kube-proxy sets it). Nothing answers and the service sees
// nothing, while the published port on 127.0.0.1 answers the host's 127.0.0.1. With
// OV_TEST_UNPROTECT=loopback the driver runs without the protection and this test must fail.
func TestLoopbackAttack(t *testing.T) {
	if _, inside := testutil.InsideNetns(t); !inside {
		return
	}
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.NetnsDir = filepath.Join(t.TempDir(), "netns")
	cfg.unguarded = os.Getenv(unprotectEnv) == "loopback"
	if cfg.unguarded {
		t.Logf("%s=loopback: running WITHOUT the loopback protection; the attacks must succeed and this test fail", unprotectEnv)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Teardown(ctx)
		_ = exec.Command("umount", "-R", "-l", cfg.NetnsDir).Run()
	})
	if err := d.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	svc := newLoopbackService(t)
	for _, n := range []api.Network{{Name: "pub", Subnet: "10.32.1.0/24"}, {Name: "quiet", Subnet: "10.32.2.0/24"}} {
		if _, err := d.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	attach := func(network, id string, ports ...string) Endpoint {
		t.Helper()
		ns, err := d.CreateNetns(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		pm, err := api.ParsePortSpecs(ports)
		if err != nil {
			t.Fatal(err)
		}
		e, err := attachEndpoint(d, driver.AttachRequest{Network: network, Container: id, Netns: ns, Ports: apiPorts(pm...)})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	web := attach("pub", "web", "127.0.0.1:9090:80")
	serve(t, web.Netns, "hello from web")
	defaultCaps := spec.DefaultCapabilities
	netAdmin := append(slices.Clone(defaultCaps), "CAP_NET_ADMIN")
	onPub, onQuiet := attach("pub", "evil"), attach("quiet", "evil2")
	adminPub, adminQuiet := attach("pub", "admin"), attach("quiet", "admin2")
	attackers := []struct {
		name string
		a    attacker
	}{
		{"default caps, bridge with a port on 127.0.0.1", attacker{onPub.Netns, onPub.Gateway, defaultCaps}},
		{"default caps, bridge without", attacker{onQuiet.Netns, onQuiet.Gateway, defaultCaps}},
	}
	admins := []struct {
		name string
		a    attacker
	}{
		{"NET_ADMIN, bridge with a port on 127.0.0.1", attacker{adminPub.Netns, adminPub.Gateway, netAdmin}},
		{"NET_ADMIN, bridge without", attacker{adminQuiet.Netns, adminQuiet.Gateway, netAdmin}},
	}

	legit := func(t *testing.T) {
		if out, err := fetch("", "127.0.0.1:9090"); err != nil || out != "hello from web" {
			t.Errorf("the host's 127.0.0.1 -> port published on 127.0.0.1:9090: %q, %v", out, err)
		}
	}
	attack := func(t *testing.T) {
		for _, at := range attackers {
			for _, k := range []struct {
				name  string
				proto int
				src   netip.Addr
			}{
				{"TCP SYN", unix.IPPROTO_TCP, netip.Addr{}},
				{"UDP", unix.IPPROTO_UDP, netip.Addr{}},
			} {
				t.Run(at.name+", "+k.name, func(t *testing.T) {
					before := svc.seen.Load()
					answered, err := at.a.rawKnock(k.proto, svc.port, k.src)
					if err != nil {
						t.Fatal(err)
					}
					time.Sleep(200 * time.Millisecond)
					if answered || svc.seen.Load() != before {
						t.Errorf("a crafted frame to the gateway's MAC for 127.0.0.1:%d reached the host's service (answered %v, service saw %d)", svc.port, answered, svc.seen.Load()-before)
					}
				})
			}
		}
	}
	t.Run("route_localnet only where a port is published on 127.0.0.1", func(t *testing.T) {
		for n, want := range map[string]string{"pub": "1", "quiet": "0", DefaultNetwork: "0"} {
			b, _ := os.ReadFile("/proc/sys/net/ipv4/conf/" + mustNetwork(t, d, n).Bridge + "/route_localnet")
			if got := strings.TrimSpace(string(b)); got != want {
				t.Errorf("route_localnet on the bridge of %q = %s; want %s", n, got, want)
			}
		}
	})
	t.Run("legitimate", legit)
	t.Run("raw frames", attack)
	t.Run("all.route_localnet=1", func(t *testing.T) {
		// A host where something else (kube-proxy) turned route_localnet on for every interface: the
		// kernel no longer drops 127/8 from the bridges as martian; the guard still does.
		run(t, "sysctl", "-w", "net.ipv4.conf.all.route_localnet=1")
		defer run(t, "sysctl", "-w", "net.ipv4.conf.all.route_localnet=0")
		legit(t)
		attack(t)
	})
	for _, at := range admins {
		t.Run(at.name+", route and connect", func(t *testing.T) {
			before := svc.seen.Load()
			answered, err := at.a.routeAndConnect(svc.port)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			if answered || svc.seen.Load() != before {
				t.Errorf("a route 127.0.0.0/8 via the gateway reached the host's service (answered %v, service saw %d)", answered, svc.seen.Load()-before)
			}
		})
	}
	// The last port on 127.0.0.1 goes: so does route_localnet.
	if err := d.Detach(ctx, "pub", "web"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/conf/" + mustNetwork(t, d, "pub").Bridge + "/route_localnet"); strings.TrimSpace(string(b)) != "0" && !cfg.unguarded {
		t.Errorf("route_localnet on the bridge of pub after its last port on 127.0.0.1 left = %s; want 0", b)
	}
}
