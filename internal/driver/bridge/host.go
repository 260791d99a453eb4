package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/netlink"
)

// The driver's kernel objects, built through internal/netlink in the calling process's network
// namespace (d.h) and in containers' namespaces (d.nl). Every method is idempotent.

// uplinkMTU returns the MTU of the default route's interface, or 0 when there is no default route.
func (d *Driver) uplinkMTU() (int, error) {
	rs, err := d.h.RouteList(nil, unix.AF_INET)
	if err != nil {
		return 0, err
	}
	for _, r := range rs {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
			links, err := d.h.LinkList()
			if err != nil {
				return 0, err
			}
			for _, l := range links {
				if l.Attrs().Index == r.LinkIndex {
					return l.Attrs().MTU, nil
				}
			}
			return 0, fmt.Errorf("the default route's interface (index %d) is gone", r.LinkIndex)
		}
	}
	return 0, nil
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}
}

// writeSysctl writes a value under /proc/sys (the calling process's network namespace for net.*).
func writeSysctl(name, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == value {
		return nil
	}
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// ensureAddrs makes link hold exactly the IPv4 address want.
func ensureAddrs(h netlink.Handle, link vnl.Link, want netip.Prefix) error {
	addrs, err := h.AddrList(link, unix.AF_INET)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if ones, _ := a.Mask.Size(); a.IP.Equal(net.IP(want.Addr().AsSlice())) && ones == want.Bits() {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, link.Attrs().Name, err)
		}
	}
	return h.AddrReplace(link, &vnl.Addr{IPNet: ipNet(want)})
}

// ensureBridge makes the network's bridge exist, up, with exactly the gateway address and the MTU; it
// also enables IPv4 forwarding and sets route_localnet on the bridge as the state wants it (localnet).
func (d *Driver) ensureBridge(n *Network) error {
	name, addr, mtu := n.Bridge, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()), n.MTU
	link, err := netlink.FindLink(d.h, name)
	if err == nil && link == nil {
		br := &vnl.Bridge{LinkAttrs: vnl.LinkAttrs{Name: name, MTU: mtu}}
		if err := d.h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		if link, err = netlink.FindLink(d.h, name); err == nil && link == nil {
			err = fmt.Errorf("it did not appear")
		}
	}
	if err != nil {
		return fmt.Errorf("look up bridge %s: %w", name, err)
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("%s exists but is a %s, not a bridge; remove it or choose another bridge name: %w", name, link.Type(), errdefs.ErrConflict)
	}
	if link.Attrs().MTU != mtu {
		if err := d.h.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set MTU of %s to %d: %w", name, mtu, err)
		}
	}
	if err := ensureAddrs(d.h, link, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr, name, err)
	}
	if err := d.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	if err := d.sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	return d.ensureLocalnet(n)
}

// ensureLocalnet sets route_localnet on the network's bridge exactly when a container of the network
// publishes a port on a loopback address or on every address (which includes 127.0.0.1), and clears
// it otherwise. A connection from 127.0.0.1 to such a port is DNATed to the container (nat OUTPUT)
// and keeps 127.0.0.1 as its source until POSTROUTING masquerades it; the kernel routes a packet with
// a 127/8 address out of, and its replies in from, a device only with route_localnet on it. Without
// it the kernel drops 127/8 on the bridge as martian; with it, the raw rules of ChainLoopback do.
func (d *Driver) ensureLocalnet(n *Network) error {
	v := "0"
	if d.localnet(n.Name) {
		v = "1"
	}
	return d.sysctl("net.ipv4.conf."+n.Bridge+".route_localnet", v)
}

// localnet reports whether the network needs route_localnet on its bridge (see ensureLocalnet).
func (d *Driver) localnet(network string) bool {
	if d.cfg.unguarded {
		return true
	}
	for _, e := range d.st.Endpoints {
		if e.Network != network {
			continue
		}
		for _, p := range e.Ports {
			if !p.HostIP.IsValid() || p.HostIP.IsUnspecified() || p.HostIP.IsLoopback() {
				return true
			}
		}
	}
	return false
}

// bridges lists the names of the host's bridge devices.
func (d *Driver) bridges() ([]string, error) {
	links, err := d.h.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		if l.Type() == "bridge" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// deleteBridge deletes the bridge; a missing one is not an error.
func (d *Driver) deleteBridge(name string) error {
	link, err := netlink.FindLink(d.h, name)
	if err != nil || link == nil {
		return err
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("%s is a %s, not a bridge; not deleting it", name, link.Type())
	}
	return d.h.LinkDel(link)
}

// ensureNetns makes path a bind-mounted network namespace (created if missing) with lo up.
func (d *Driver) ensureNetns(path string) error {
	if err := d.nl.Create(path); err != nil {
		return err
	}
	h, err := d.nl.Handle(path)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := netlink.FindLink(h, "lo")
	if err == nil && lo == nil {
		err = fmt.Errorf("namespace %s has no lo", path)
	}
	if err != nil {
		return err
	}
	return h.LinkSetUp(lo)
}

// checkNetns tells whether path is a network namespace.
func (d *Driver) checkNetns(path string) error {
	h, err := d.nl.Handle(path)
	if err != nil {
		return err
	}
	h.Close()
	return nil
}

// deleteVeth deletes the host end (and so the pair); a missing one is not an error.
func (d *Driver) deleteVeth(hostIf string) error {
	link, err := netlink.FindLink(d.h, hostIf)
	if err != nil || link == nil {
		return err
	}
	if err := d.h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", hostIf, err)
	}
	return nil
}

// flushConntrack deletes the connection-tracking entries of flows from or to ip (DNATed ones
// included), so a published UDP port does not keep sending to an address that left.
func (d *Driver) flushConntrack(ip netip.Addr) error {
	var toOrFrom, from vnl.ConntrackFilter
	if err := toOrFrom.AddIP(vnl.ConntrackReplyAnyIP, net.IP(ip.AsSlice())); err != nil {
		return err
	}
	if err := from.AddIP(vnl.ConntrackOrigSrcIP, net.IP(ip.AsSlice())); err != nil {
		return err
	}
	_, err := d.h.ConntrackDeleteFilters(vnl.ConntrackTable, unix.AF_INET, &toOrFrom, &from)
	return err
}
