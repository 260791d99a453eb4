package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
	"github.com/ovnet/ov/internal/vxlan/vxlantest"
)

const wgPort = 51820 // the agents' default --wireguard-port

// underlayStats is what a capture on the lab's underlay saw between two hosts.
type underlayStats struct {
	wireguard int            // UDP datagrams to or from the WireGuard port
	vni       map[uint32]int // VXLAN datagrams by VNI
	marker    int            // frames holding the marker anywhere
	inner     int            // frames holding an IPv4 header of the watched subnet (a tunnelled packet in clear)
}

func (s underlayStats) String() string {
	return fmt.Sprintf("wireguard %d, vxlan by VNI %v, marker %d, cleartext inner packets %d", s.wireguard, s.vni, s.marker, s.inner)
}

// captureUnderlay records, from an AF_PACKET socket in the lab's underlay namespace (every frame the
// hosts exchange), the frames between hosts a and b: how many are WireGuard, VXLAN (by VNI), hold
// marker, or hold an IPv4 header of subnet. Calling the result returns the counts so far and resets
// them.
func captureUnderlay(t *testing.T, l *lab.Lab, a, b netip.Addr, subnet netip.Prefix, marker string) func() underlayStats {
	t.Helper()
	st := underlayStats{vni: map[uint32]int{}}
	locked := sniff(t, "/run/netns/"+l.UnderlayNetns, func(frame []byte) { classify(frame, a, b, subnet, marker, &st) })
	return func() (out underlayStats) {
		locked(func() { out, st = st, underlayStats{vni: map[uint32]int{}} })
		return out
	}
}

// classify counts one Ethernet frame into st when it is IPv4 between a and b.
func classify(f []byte, a, b netip.Addr, subnet netip.Prefix, marker string, st *underlayStats) {
	if bytes.Contains(f, []byte(marker)) {
		st.marker++
	}
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return
	}
	ip := f[14:]
	src, _ := netip.AddrFromSlice(ip[12:16])
	dst, _ := netip.AddrFromSlice(ip[16:20])
	if !(src == a && dst == b || src == b && dst == a) {
		return
	}
	for i := 20; i+20 <= len(ip); i++ { // an inner IPv4 header of the subnet, anywhere in the frame
		s, _ := netip.AddrFromSlice(ip[i+12 : i+16])
		d, _ := netip.AddrFromSlice(ip[i+16 : i+20])
		if ip[i]>>4 == 4 && subnet.Contains(s) && subnet.Contains(d) {
			st.inner++
			break
		}
	}
	hl := int(ip[0]&0x0f) * 4
	if ip[9] != unix.IPPROTO_UDP || len(ip) < hl+16 {
		return
	}
	udp := ip[hl:]
	sport, dport := binary.BigEndian.Uint16(udp[0:2]), binary.BigEndian.Uint16(udp[2:4])
	switch {
	case sport == wgPort || dport == wgPort:
		st.wireguard++
	case dport == 4789:
		st.vni[uint32(udp[12])<<16|uint32(udp[13])<<8|uint32(udp[14])]++
	}
}

// labHost returns a host of the lab.
func labHost(t *testing.T, l *lab.Lab, name string) *lab.Host {
	t.Helper()
	h, err := l.Host(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// fetch gets http://ip/ from container c and checks that the answer holds marker.
func fetch(l *lab.Lab, c container, ip, marker string) error {
	out, err := execIn(l, c, "timeout", "5", "wget", "-q", "-O", "-", "http://"+ip+"/")
	if err != nil {
		return fmt.Errorf("%s on %s: wget http://%s/: %v %s", c.Name, c.Host, ip, err, out)
	}
	if !strings.Contains(out, marker) {
		return fmt.Errorf("%s on %s: http://%s/ answered %q, not the marker", c.Name, c.Host, ip, out)
	}
	return nil
}

// webServer runs a busybox httpd on host serving marker.
func webServer(t *testing.T, l *lab.Lab, host, name, network, marker string) container {
	t.Helper()
	return runOn(t, l, host, name, network, "sh", "-c", "mkdir -p /w && echo "+marker+" > /w/index.html && exec httpd -f -p 80 -h /w")
}

// hostKey reads the WireGuard public key the controller holds for host.
func hostKey(t *testing.T, l *lab.Lab, host string) api.Host {
	t.Helper()
	var hs []api.Host
	if err := json.Unmarshal([]byte(ctl(t, l, "host1", "node", "inspect", host)), &hs); err != nil || len(hs) != 1 {
		t.Fatalf("node inspect %s: %v", host, err)
	}
	return hs[0]
}

// TestEncryptedNetwork: an HTTP transfer of a marker between containers of two hosts on an encrypted
// network crosses the underlay only as WireGuard: a capture there never sees the marker, the
// network's VNI or one of its packets in clear, while a plain network beside it works and shows its
// VXLAN (the capture sees what is in clear). Crafted cleartext VXLAN for the encrypted VNI from a
// member's underlay address reaches no container.
func TestEncryptedNetwork(t *testing.T) {
	l := sharedLab(t)
	encSubnet, plainSubnet := netip.MustParsePrefix("10.61.0.0/24"), netip.MustParsePrefix("10.62.0.0/24")
	networkOn(t, l, "encnet", "--subnet", encSubnet.String(), "--encrypted")
	networkOn(t, l, "plainnet", "--subnet", plainSubnet.String())
	if out := ctl(t, l, "host1", "network", "ls"); !strings.Contains(out, "ENCRYPTED") {
		t.Errorf("network ls shows no ENCRYPTED column:\n%s", out)
	}
	marker := fmt.Sprintf("ov-marker-%d", time.Now().UnixNano())
	web := webServer(t, l, "host1", "encweb", "encnet", marker)
	cli := runOn(t, l, "host2", "enccli", "encnet", "sleep", "100000")
	pmarker := fmt.Sprintf("ov-plain-%d", time.Now().UnixNano())
	pweb := webServer(t, l, "host1", "plainweb", "plainnet", pmarker)
	pcli := runOn(t, l, "host2", "plaincli", "plainnet", "sleep", "100000")
	dumpOnFailure(t, l, "host1", "host2")
	h1, h2 := labHost(t, l, "host1"), labHost(t, l, "host2")
	a1, a2 := netip.MustParseAddr(h1.Addr), netip.MustParseAddr(h2.Addr)
	encVNI, plainVNI := vniOf(t, l, "encnet"), vniOf(t, l, "plainnet")
	for _, h := range []string{"host1", "host2"} {
		if k := hostKey(t, l, h); api.ValidWireGuardKey(k.WireGuardKey) != "" {
			t.Fatalf("host %s published no valid WireGuard key: %q", h, k.WireGuardKey)
		}
	}

	capture := captureUnderlay(t, l, a1, a2, encSubnet, marker)
	testutil.Eventually(t, 30*time.Second, func() error { return fetch(l, cli, web.IP, marker) })
	testutil.Eventually(t, 30*time.Second, func() error { return fetch(l, pcli, pweb.IP, pmarker) })
	capture() // what came before both worked: handshakes, the first tries
	for range 5 {
		if err := fetch(l, cli, web.IP, marker); err != nil {
			t.Fatal(err)
		}
		if err := fetch(l, pcli, pweb.IP, pmarker); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	st := capture()
	t.Logf("underlay between host1 and host2: %s", st)
	switch {
	case st.wireguard == 0:
		t.Errorf("no WireGuard datagram between the hosts: the encrypted network's traffic did not go through the tunnel (%s)", st)
	case st.vni[encVNI] != 0 || st.marker != 0 || st.inner != 0:
		t.Errorf("the encrypted network's traffic crossed the underlay in clear (VNI %d): %s", encVNI, st)
	case st.vni[plainVNI] == 0:
		t.Errorf("the capture saw no VXLAN of the plain network (VNI %d): it does not see what is in clear (%s)", plainVNI, st)
	}

	t.Run("crafted cleartext VXLAN", func(t *testing.T) {
		got := listenIn(t, web.NetNS, netip.MustParseAddr(web.IP), 9999)
		pgot := listenIn(t, pweb.NetNS, netip.MustParseAddr(pweb.IP), 9999)
		craft := func(vni uint32, target string, payload string) []byte {
			ip := netip.MustParseAddr(target)
			return vxlantest.Crafted{OuterSrc: a2, OuterDst: a1, Port: 4789, VNI: vni,
				InnerDstMAC: net.HardwareAddr{0x02, 0x42, ip.As4()[0], ip.As4()[1], ip.As4()[2], ip.As4()[3]},
				InnerSrc:    netip.AddrFrom4([4]byte{ip.As4()[0], ip.As4()[1], ip.As4()[2], 250}), InnerDst: ip, InnerPort: 9999, Payload: []byte(payload),
			}.Bytes()
		}
		// The attacker sits on the underlay and forges host2's address (host2 itself cannot send it:
		// its own filter refuses VXLAN of the encrypted VNI outside the tunnel).
		underlay := "/run/netns/" + l.UnderlayNetns
		if err := vxlantest.SendRaw("/run/netns/"+h2.Netns, craft(encVNI, web.IP, "from host2")); !errors.Is(err, unix.EPERM) {
			t.Errorf("host2 sent cleartext VXLAN of the encrypted VNI on its underlay: %v; want EPERM from its output filter", err)
		}
		// Control: the same frame for the plain network, from the same forged member, arrives.
		if err := vxlantest.SendRaw(underlay, craft(plainVNI, pweb.IP, "control")); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, func() error {
			if pgot("control") == 0 {
				return errors.New("the crafted frame for the plain network did not arrive: the packet builder is broken")
			}
			return nil
		})
		var pkts [][]byte
		for range 5 {
			pkts = append(pkts, craft(encVNI, web.IP, "attack"))
		}
		if err := vxlantest.SendRaw(underlay, pkts...); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if n := got("attack"); n != 0 {
			t.Errorf("the container of the encrypted network received %d of 5 cleartext VXLAN frames from a member", n)
		}
	})
}

// dumpOnFailure logs the hosts' tunnel, routes and filter when the test fails.
func dumpOnFailure(t *testing.T, l *lab.Lab, hosts ...string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, h := range hosts {
			for _, cmd := range [][]string{{"ip", "-d", "link"}, {"ip", "addr"}, {"ip", "route"}, {"ip", "-s", "link"}, {"nstat", "-az"}, {"iptables-save", "-c"}, {"bridge", "fdb", "show"}} {
				out, err := l.Exec(h, cmd...)
				t.Logf("%s: %s: %v\n%s", h, strings.Join(cmd, " "), err, out)
			}
		}
	})
}
