package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/membership/membershiptest"
	"github.com/ovnet/ov/internal/testutil"
)

// The attacks on gossip from the underlay (docs/security-gossip.md): a stranger with no key, and a
// compromised member holding the cluster's key.

const gossipPort = 7946

// inNetns runs fn on a thread of its own moved into the network namespace at path; the thread ends
// with fn. Never the main thread: its namespace is the process's (ip netns pids, which the lab's
// teardown kills), and Go cannot end it, so a goroutine that lands there tries again elsewhere.
func inNetns(path string, fn func() error) error {
	errMain := errors.New("on the main thread")
	for {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked once moved: the thread ends with the goroutine
			if unix.Gettid() == unix.Getpid() {
				runtime.UnlockOSThread()
				errc <- errMain
				return
			}
			f, err := os.Open(path)
			if err != nil {
				errc <- err
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
				return
			}
			errc <- fn()
		}()
		if err := <-errc; err != errMain {
			return err
		}
	}
}

// nsTransport is memberlist's UDP/TCP transport with its sockets in a network namespace: listeners
// made there, and outgoing TCP connections dialled from there.
type nsTransport struct {
	*memberlist.NetTransport
	netns string
}

func (t nsTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(t.netns, func() (err error) { c, err = net.DialTimeout("tcp", addr, timeout); return err })
	return c, err
}

func (t nsTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// strangerNode starts a plain memberlist node without the cluster's key in the lab's underlay
// namespace, on the underlay's own address: an attacker on the network, with no ov code.
func strangerNode(t *testing.T, l *lab.Lab, name string) *memberlist.Memberlist {
	t.Helper()
	ns := "/run/netns/" + l.UnderlayNetns
	addr := l.Config.Subnet.Masked().Addr().Next().String()
	var nt *memberlist.NetTransport
	err := inNetns(ns, func() (err error) {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{addr}, BindPort: gossipPort, Logger: log.New(io.Discard, "", 0)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	mc.Transport = nsTransport{nt, ns}
	mc.AdvertiseAddr, mc.AdvertisePort = addr, gossipPort
	mc.Logger = log.New(io.Discard, "", 0)
	list, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = list.Shutdown() })
	return list
}

// capture records, from a packet socket in the underlay namespace (every host's link to the underlay
// switch), the frames to or from the gossip port, until stop is closed.
type capture struct {
	mu     sync.Mutex
	frames [][]byte
}

func startCapture(t *testing.T, l *lab.Lab, stop <-chan struct{}) (*capture, <-chan struct{}) {
	t.Helper()
	var fd int
	err := inNetns("/run/netns/"+l.UnderlayNetns, func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in the underlay namespace: %v", err)
	}
	tv := unix.Timeval{Usec: 100_000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer unix.Close(fd)
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || !isGossip(buf[:n]) {
				continue
			}
			c.mu.Lock()
			c.frames = append(c.frames, slices.Clone(buf[:n]))
			c.mu.Unlock()
		}
	}()
	return c, done
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// isGossip reports whether an Ethernet frame is IPv4 UDP or TCP to or from the gossip port.
func isGossip(f []byte) bool {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP {
		return false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if (ip[9] != unix.IPPROTO_UDP && ip[9] != unix.IPPROTO_TCP) || len(ip) < ihl+4 {
		return false
	}
	src, dst := binary.BigEndian.Uint16(ip[ihl:]), binary.BigEndian.Uint16(ip[ihl+2:])
	return src == gossipPort || dst == gossipPort
}

// TestGossipStrangerCannotJoinOrRead: a memberlist node without the cluster's key on the underlay
// cannot join (its join fails, it learns no member, no agent lists it), and a capture of every gossip
// packet on the underlay while it tries shows no host name in clear.
func TestGossipStrangerCannotJoinOrRead(t *testing.T) {
	l := sharedLab(t)
	stop := make(chan struct{})
	capt, captured := startCapture(t, l, stop)
	evil := strangerNode(t, l, "intruder")
	_, joinErr := evil.Join([]string{l.Hosts[0].Addr + ":7946", l.Hosts[1].Addr + ":7946"})
	time.Sleep(6 * time.Second) // more than a push/pull interval (5s) of the agents
	close(stop)
	<-captured

	var learnt []string
	for _, n := range evil.Members() {
		learnt = append(learnt, n.Name)
	}
	if joinErr == nil || len(learnt) != 1 {
		t.Errorf("the keyless node joined (join error %v) and learnt the members %v", joinErr, learnt)
	}
	for _, h := range l.Hosts {
		b, err := os.ReadFile(h.Agent.Log)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "host=intruder") {
			t.Errorf("the agent of %s took the keyless node for a member:\n%s", h.Name, grepLines(string(b), "intruder"))
		}
	}
	capt.mu.Lock()
	defer capt.mu.Unlock()
	if len(capt.frames) < 20 {
		t.Fatalf("the capture saw %d gossip frames in 6s; the agents gossip every 100ms: the capture is broken", len(capt.frames))
	}
	names := regexp.MustCompile(`host[1-9]`)
	for _, f := range capt.frames {
		if m := names.Find(f); m != nil {
			t.Fatalf("a gossip frame on the underlay shows the host name %q in clear (%d frames captured):\n%q", m, len(capt.frames), f)
		}
	}
	t.Logf("%d gossip frames captured, no host name in them", len(capt.frames))
}

func grepLines(s, word string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, word) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// gossipKey reads the cluster's primary gossip key from a host's state file, as an attacker who owns
// that host would.
func gossipKey(t *testing.T, l *lab.Lab, host string) []byte {
	t.Helper()
	h, err := l.Host(host)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(h.Dir, "overlay", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		GossipKeyring struct{ Keys []string } `json:"gossipKeyring"`
	}
	if err := json.Unmarshal(b, &st); err != nil || len(st.GossipKeyring.Keys) == 0 {
		t.Fatalf("no gossip keyring in %s's state file (%v)", host, err)
	}
	key, err := base64.StdEncoding.DecodeString(st.GossipKeyring.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestGossipDeadClaimsChangeNothing: claims that host3 is dead, sent for 4 s to host1 and host2 with
// ever higher incarnations, by a stranger on the underlay (in clear) and by a compromised member
// (host2, encrypted with the key it holds): host3's FDB and neighbour entries stay on host1 and host2
// all along, and pings from both to host3's container keep flowing.
func TestGossipDeadClaimsChangeNothing(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "gsp", "--subnet", "10.78.0.0/24")
	vni := vniOf(t, l, "gsp")
	a := runOn(t, l, "host1", "gsp-a", "gsp", "sleep", "100000")
	b := runOn(t, l, "host2", "gsp-b", "gsp", "sleep", "100000")
	c := runOn(t, l, "host3", "gsp-c", "gsp", "sleep", "100000")
	h1, h2, h3 := l.Hosts[0].Addr, l.Hosts[1].Addr, l.Hosts[2].Addr
	want := map[string][2][]string{
		"host1": {{mac(b.IP) + " dst " + h2, mac(c.IP) + " dst " + h3, "00:00:00:00:00:00 dst " + h2, "00:00:00:00:00:00 dst " + h3},
			{b.IP + " " + mac(b.IP) + " PERMANENT", c.IP + " " + mac(c.IP) + " PERMANENT"}},
		"host2": {{mac(a.IP) + " dst " + h1, mac(c.IP) + " dst " + h3, "00:00:00:00:00:00 dst " + h1, "00:00:00:00:00:00 dst " + h3},
			{a.IP + " " + mac(a.IP) + " PERMANENT", c.IP + " " + mac(c.IP) + " PERMANENT"}},
	}
	for host, w := range want {
		testutil.Eventually(t, 15*time.Second, func() error { return expectEntries(l, host, vni, w[0], w[1]) })
	}
	for _, tc := range []struct {
		name  string
		netns string // where the attacker sends from
		key   []byte
	}{
		{"stranger on the underlay", l.UnderlayNetns, nil},
		{"compromised member host2", l.Hosts[1].Netns, gossipKey(t, l, "host2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conn *net.UDPConn
			err := inNetns("/run/netns/"+tc.netns, func() (err error) {
				conn, err = net.ListenUDP("udp4", nil)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			stop := make(chan struct{})
			sent := make(chan error, 1)
			go func() { // the attack: a claim every 50ms to host1 and host2
				for i := 0; ; i++ {
					select {
					case <-stop:
						sent <- nil
						return
					case <-time.After(50 * time.Millisecond):
					}
					claim := membershiptest.DeadClaim("host3", "host2", uint32(1_000_000+100*i), tc.key)
					for _, to := range []string{h1, h2} {
						if _, err := conn.WriteToUDP(claim, &net.UDPAddr{IP: net.ParseIP(to), Port: gossipPort}); err != nil {
							sent <- err
							return
						}
					}
				}
			}()
			pings := make(chan error, 2)
			for _, from := range []container{a, b} {
				go func() { pings <- pingFlow(l, from, c.IP, 35) }()
			}
			deadline := time.Now().Add(4 * time.Second)
			var failure error
			for time.Now().Before(deadline) && failure == nil {
				for host, w := range want {
					if err := expectEntries(l, host, vni, w[0], w[1]); err != nil {
						failure = fmt.Errorf("during the attack: %w", err)
						break
					}
				}
			}
			close(stop)
			if err := <-sent; err != nil {
				t.Fatalf("sending the claims: %v", err)
			}
			for range 2 {
				if err := <-pings; err != nil && failure == nil {
					failure = err
				}
			}
			if failure != nil {
				t.Fatal(failure)
			}
		})
	}
}

// pingFlow sends count pings 100ms apart from container c to ip and fails if one is lost.
func pingFlow(l *lab.Lab, c container, ip string, count int) error {
	out, err := execIn(l, c, "ping", "-c", fmt.Sprint(count), "-i", "0.1", "-W", "1", ip)
	want := fmt.Sprintf("%d packets transmitted, %d packets received", count, count)
	if err != nil || !bytes.Contains([]byte(out), []byte(want)) {
		return fmt.Errorf("pings from %s on %s to %s during the attack: %v\n%s", c.Name, c.Host, ip, err, out)
	}
	return nil
}
