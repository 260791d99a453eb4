package vxlantest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/ovnet/ov/internal/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Lab is a multi-host underlay made of network namespaces: one namespace holding a bridge named
// "underlay", and "hosts", each a namespace with an interface eth0 plugged into that bridge. It is
// for privileged tests and benchmarks; it touches nothing outside the namespaces it creates.
type Lab struct {
	Prefix   string // every namespace name starts with it
	Underlay string // name of the underlay namespace
	MTU      int
	Hosts    []Host
	spaces   []string
}

// Host is one namespace on the underlay.
type Host struct {
	Name string     // namespace name
	Path string     // /run/netns/Name
	Addr netip.Addr // address of eth0 on the underlay /24
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// NewLab creates the underlay namespace (prefix+"u") with its bridge at the given MTU.
// Close removes everything.
func NewLab(prefix string, mtu int) (*Lab, error) {
	l := &Lab{Prefix: prefix, Underlay: prefix + "u", MTU: mtu}
	if err := l.netns(l.Underlay); err != nil {
		return nil, err
	}
	m := fmt.Sprint(mtu)
	if err := run("ip", "-n", l.Underlay, "link", "add", "underlay", "mtu", m, "type", "bridge"); err != nil {
		l.Close()
		return nil, err
	}
	if err := run("ip", "-n", l.Underlay, "link", "set", "underlay", "up"); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// NewNetns creates a namespace with lo up that Close removes; name is prefixed with the lab prefix.
func (l *Lab) NewNetns(name string) (string, error) {
	name = l.Prefix + name
	return "/run/netns/" + name, l.netns(name)
}

func (l *Lab) netns(name string) error {
	if err := run("ip", "netns", "add", name); err != nil {
		return err
	}
	l.spaces = append(l.spaces, name)
	return run("ip", "-n", name, "link", "set", "lo", "up")
}

// AddHost creates namespace prefix+name with eth0 at addr/24 on the underlay.
func (l *Lab) AddHost(name string, addr netip.Addr) (Host, error) {
	h := Host{Name: l.Prefix + name, Addr: addr}
	h.Path = "/run/netns/" + h.Name
	if err := l.netns(h.Name); err != nil {
		return h, err
	}
	port := fmt.Sprintf("p%d", len(l.Hosts)+len(l.spaces))
	m := fmt.Sprint(l.MTU)
	for _, args := range [][]string{
		{"-n", l.Underlay, "link", "add", port, "mtu", m, "type", "veth", "peer", "name", "eth0", "mtu", m, "netns", h.Name},
		{"-n", l.Underlay, "link", "set", port, "master", "underlay", "up"},
		{"-n", h.Name, "addr", "add", addr.String() + "/24", "dev", "eth0"},
		{"-n", h.Name, "link", "set", "eth0", "up"},
	} {
		if err := run("ip", args...); err != nil {
			return h, err
		}
	}
	l.Hosts = append(l.Hosts, h)
	return h, nil
}

// Close deletes every namespace of the lab (and so every link, route and iptables rule in them).
func (l *Lab) Close() {
	for i := len(l.spaces) - 1; i >= 0; i-- {
		_ = exec.Command("ip", "netns", "delete", l.spaces[i]).Run()
	}
	l.spaces = nil
}

// InNetns runs fn on a fresh OS thread inside the network namespace at path; sockets fn opens stay
// in that namespace. The thread is discarded afterwards.
func InNetns(path string, fn func() error) error { return netlink.Do(path, fn) }

// Ping sends one ICMP echo of exactly size bytes (IP header included) with the Don't Fragment bit
// from inside the namespace at path to dst and waits up to timeout for the reply.
func Ping(path string, dst netip.Addr, size int, timeout time.Duration) error {
	p, err := openPinger(path)
	if err != nil {
		return err
	}
	defer p.c.Close()
	return p.echo(dst, size, 1, timeout)
}

// PingRTTs sends n echoes of 84 bytes one after the other from inside the namespace at path to dst
// and returns their round-trip times.
func PingRTTs(path string, dst netip.Addr, n int) ([]time.Duration, error) {
	p, err := openPinger(path)
	if err != nil {
		return nil, err
	}
	defer p.c.Close()
	rtts := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if err := p.echo(dst, 84, i+1, 2*time.Second); err != nil {
			return nil, err
		}
		rtts = append(rtts, time.Since(start))
	}
	return rtts, nil
}

type pinger struct {
	c    *net.IPConn
	path string
	id   int
	buf  []byte
}

func openPinger(path string) (*pinger, error) {
	p := &pinger{path: path, id: int(time.Now().UnixNano() & 0xffff), buf: make([]byte, 65536)}
	if err := InNetns(path, func() error {
		pc, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err == nil {
			p.c = pc.(*net.IPConn)
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("ping: open raw socket in %s: %w", path, err)
	}
	rc, err := p.c.SyscallConn()
	if err != nil {
		p.c.Close()
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	}); err != nil || serr != nil {
		p.c.Close()
		return nil, fmt.Errorf("ping: set DF: %v %v", err, serr)
	}
	return p, nil
}

func (p *pinger) echo(dst netip.Addr, size, seq int, timeout time.Duration) error {
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: make([]byte, size-28)}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := p.c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("ping %s size %d: %w", dst, size, err)
	}
	deadline := time.Now().Add(timeout)
	_ = p.c.SetReadDeadline(deadline)
	for {
		n, from, err := p.c.ReadFrom(p.buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || time.Now().After(deadline) {
				return fmt.Errorf("ping %s size %d from %s: no reply within %v", dst, size, p.path, timeout)
			}
			return fmt.Errorf("ping %s: %w", dst, err)
		}
		m, err := icmp.ParseMessage(1, p.buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == p.id && e.Seq == seq && from.String() == dst.String() {
			return nil
		}
	}
}
