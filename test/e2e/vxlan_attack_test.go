package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
	"github.com/ovnet/ov/internal/vxlan/vxlantest"
	"golang.org/x/sys/unix"
)

// The attackers and the listener below enter lab namespaces from this process (vxlantest.InNetns: a
// thread switched into the namespace, discarded afterwards). Go cannot discard the main thread: it
// would stay in the namespace, and the lab's teardown, which kills every process of its namespaces,
// would kill the test binary. Keeping the main goroutine on the main thread keeps every other
// goroutine off it.
func init() { runtime.LockOSThread() }

// TestVXLANIngressAttacks: with real agents, crafted VXLAN frames for a container of an internal
// network (its VNI, MAC and IP, a UDP datagram to a listener in it) reach it from no attacker: a
// container forging the underlay address of a member serving the network (to its gateway, to its
// host, through another member host), a host process on a member that does not serve the network,
// and the underlay namespace (not a member): neither a listener nor a capture in the container sees
// them. The same frame from the member that serves the network
// arrives, and real traffic keeps flowing. The attackers act from the network namespaces of the
// containers and hosts, as root with NET_RAW does there.
func TestVXLANIngressAttacks(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "vxa", "--subnet", "10.41.0.0/24")
	networkOn(t, l, "vxb", "--subnet", "10.42.0.0/24", "--internal")
	a1 := runOn(t, l, "host1", "vxa1", "vxa", "sleep", "100000")
	a2 := runOn(t, l, "host2", "vxa2", "vxa", "sleep", "100000")
	b1 := runOn(t, l, "host1", "vxb1", "vxb", "sleep", "100000")
	b3 := runOn(t, l, "host3", "vxb3", "vxb", "sleep", "100000")
	realTraffic := func() error {
		for _, p := range [][2]container{{a2, a1}, {b3, b1}} {
			if err := ping(l, p[0], p[1].IP); err != nil {
				return err
			}
		}
		return nil
	}
	testutil.Eventually(t, 30*time.Second, realTraffic)

	host := func(name string) *lab.Host {
		h, err := l.Host(name)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h1, h2, h3 := host("host1"), host("host2"), host("host3")
	addr := netip.MustParseAddr
	target := addr(b1.IP)
	vni := vniOf(t, l, "vxb")
	got := listenIn(t, b1.NetNS, target, 9999)
	craft := func(src, dst string, payload string) []byte {
		return vxlantest.Crafted{
			OuterSrc: addr(src), OuterDst: addr(dst), Port: 4789, VNI: vni,
			InnerDstMAC: net.HardwareAddr{0x02, 0x42, target.As4()[0], target.As4()[1], target.As4()[2], target.As4()[3]},
			InnerSrc:    addr("10.42.0.250"), InnerDst: target, InnerPort: 9999, Payload: []byte(payload),
		}.Bytes()
	}

	if err := vxlantest.SendRaw("/run/netns/"+h3.Netns, craft(h3.Addr, h1.Addr, "control")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got("control") == 0 {
			return errors.New("the frame from host3, which serves vxb, did not reach the container: packet builder or overlay broken")
		}
		return nil
	})

	attacks := []struct {
		name, from, src, dst string
	}{
		{"container forging a member's address, to its gateway", a1.NetNS, h3.Addr, "10.41.0.1"},
		{"container forging a member's address, to its host", a1.NetNS, h3.Addr, h1.Addr},
		{"container on another member forging a member's address", a2.NetNS, h3.Addr, h1.Addr},
		{"host process on a member that does not serve the network", "/run/netns/" + h2.Netns, h2.Addr, h1.Addr},
		{"non-member on the underlay", "/run/netns/" + l.UnderlayNetns, nth1(l), h1.Addr},
	}
	var payloads []string
	for _, tc := range attacks {
		payloads = append(payloads, "attack "+tc.name)
	}
	captured := captureIn(t, b1.NetNS, payloads...)
	for _, tc := range attacks {
		t.Run(tc.name, func(t *testing.T) {
			payload := "attack " + tc.name
			pkts := [][]byte{}
			for range 5 {
				pkts = append(pkts, craft(tc.src, tc.dst, payload))
			}
			if err := vxlantest.SendRaw(tc.from, pkts...); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			if n := got(payload); n != 0 {
				t.Errorf("the container received %d of the 5 crafted frames", n)
			}
			if n := captured(payload); n != 0 {
				t.Errorf("a capture in the container saw %d of the 5 crafted frames", n)
			}
			if err := realTraffic(); err != nil {
				t.Errorf("real traffic after the attack: %v", err)
			}
		})
	}
}

// nth1 is the underlay namespace's address (the first of the subnet).
func nth1(l *lab.Lab) string { return l.Config.Subnet.Masked().Addr().Next().String() }

// listenIn listens on ip:port in the network namespace at path and returns a counter of the datagrams
// received, by payload.
func listenIn(t *testing.T, path string, ip netip.Addr, port int) func(string) int {
	t.Helper()
	var pc net.PacketConn
	if err := vxlantest.InNetns(path, func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", ip, port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got[string(buf[:n])]++
			mu.Unlock()
		}
	}()
	return func(p string) int { mu.Lock(); defer mu.Unlock(); return got[p] }
}

// captureIn counts, by payload, the frames seen on any interface of the network namespace at path
// (an AF_PACKET socket: what a capture there shows, whether or not a socket would take them).
func captureIn(t *testing.T, path string, payloads ...string) func(string) int {
	t.Helper()
	got := map[string]int{}
	locked := sniff(t, path, func(frame []byte) {
		for _, p := range payloads {
			if bytes.Contains(frame, []byte(p)) {
				got[p]++
			}
		}
	})
	return func(p string) (n int) {
		locked(func() { n = got[p] })
		return n
	}
}

// sniff calls each for every frame seen on any interface of the network namespace at path (an
// AF_PACKET socket) until the test ends. each runs under a lock; read what it gathers through
// locked.
func sniff(t *testing.T, path string, each func(frame []byte)) (locked func(func())) {
	t.Helper()
	var fd int
	if err := vxlantest.InNetns(path, func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	var mu sync.Mutex
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done; unix.Close(fd) })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			mu.Lock()
			each(buf[:n])
			mu.Unlock()
		}
	}()
	return func(f func()) { mu.Lock(); defer mu.Unlock(); f() }
}
