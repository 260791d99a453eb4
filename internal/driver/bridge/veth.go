package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	vnl "github.com/vishvananda/netlink"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/netlink"
)

// ensureVeth makes the endpoint's veth exist and match e: the host end a port of bridge, up, with
// hairpin; the container end named e.IfName with e.Address, e.MAC, the MTU, and a default route when
// e.DefaultRoute.
func (d *Driver) ensureVeth(e *Endpoint, bridge string, mtu int) error {
	br, err := netlink.FindLink(d.h, bridge)
	if err == nil && br == nil {
		err = fmt.Errorf("no such device")
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	mac, err := net.ParseMAC(e.MAC)
	if err != nil {
		return err
	}
	ch, err := d.nl.Handle(e.Netns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", e.Netns, err)
	}
	defer ch.Close()
	host, cont, err := d.vethPair(ch, e, mac, mtu)
	if err != nil {
		return err
	}
	if err := d.setupHostEnd(host, br, e.HostIf, mtu); err != nil {
		return err
	}
	return setupContainerEnd(ch, cont, e, mac, mtu)
}

// vethPair returns the endpoint's two ends (host, container), adopting an existing pair only if the
// container end is the peer of the host end, and creating it otherwise.
func (d *Driver) vethPair(ch netlink.Handle, e *Endpoint, mac net.HardwareAddr, mtu int) (host, cont vnl.Link, err error) {
	host, herr := netlink.FindLink(d.h, e.HostIf)
	cont, cerr := netlink.FindLink(ch, e.IfName)
	if herr != nil || cerr != nil {
		return nil, nil, fmt.Errorf("look up veth %s/%s: %w", e.HostIf, e.IfName, errors.Join(herr, cerr))
	}
	if host != nil && cont != nil && cont.Type() == "veth" && host.Type() == "veth" &&
		// A veth's IFLA_LINK is its peer's index (in the peer's namespace).
		cont.Attrs().ParentIndex == host.Attrs().Index && host.Attrs().ParentIndex == cont.Attrs().Index {
		return host, cont, nil
	}
	if host != nil {
		if err := d.h.LinkDel(host); err != nil {
			return nil, nil, fmt.Errorf("delete stale %s: %w", e.HostIf, err)
		}
	}
	if cont, err = netlink.FindLink(ch, e.IfName); err == nil && cont != nil {
		if cont.Type() != "veth" {
			return nil, nil, fmt.Errorf("namespace %s already has a %s interface %s; not replacing it: %w", e.Netns, cont.Type(), e.IfName, errdefs.ErrConflict)
		}
		if err := ch.LinkDel(cont); err != nil {
			return nil, nil, fmt.Errorf("delete stale %s in %s: %w", e.IfName, e.Netns, err)
		}
	}
	fd, release, err := d.nl.Fd(e.Netns)
	if err != nil {
		return nil, nil, err
	}
	v := &vnl.Veth{LinkAttrs: vnl.LinkAttrs{Name: e.HostIf, MTU: mtu}, PeerName: e.IfName,
		PeerHardwareAddr: mac, PeerNamespace: vnl.NsFd(fd), PeerMTU: uint32(mtu)}
	err = d.h.LinkAdd(v)
	release()
	if err != nil {
		return nil, nil, fmt.Errorf("create veth %s/%s: %w", e.HostIf, e.IfName, err)
	}
	host, herr = netlink.FindLink(d.h, e.HostIf)
	cont, cerr = netlink.FindLink(ch, e.IfName)
	if herr == nil && cerr == nil && (host == nil || cont == nil) {
		herr = fmt.Errorf("an end did not appear")
	}
	if herr != nil || cerr != nil {
		return nil, nil, fmt.Errorf("look up veth %s/%s: %w", e.HostIf, e.IfName, errors.Join(herr, cerr))
	}
	return host, cont, nil
}

// setupHostEnd makes the host end a port of the bridge, with the MTU, hairpin, up.
func (d *Driver) setupHostEnd(host, br vnl.Link, name string, mtu int) error {
	if host.Attrs().MTU != mtu {
		if err := d.h.LinkSetMTU(host, mtu); err != nil {
			return err
		}
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := d.h.LinkSetMasterByIndex(host, br.Attrs().Index); err != nil {
			return fmt.Errorf("add %s to %s: %w", name, br.Attrs().Name, err)
		}
	}
	// Hairpin: with br_netfilter, a container's packet to its own published port is DNATed at the
	// bridge and must be sent back out of the port it came in on.
	if err := d.h.LinkSetHairpin(host, true); err != nil {
		return fmt.Errorf("hairpin on %s: %w", name, err)
	}
	return d.h.LinkSetUp(host)
}

// setupContainerEnd gives the container end its MAC, MTU and address, sets it (and lo) up, and adds
// the default route.
func setupContainerEnd(ch netlink.Handle, cont vnl.Link, e *Endpoint, mac net.HardwareAddr, mtu int) error {
	if cont.Attrs().HardwareAddr.String() != mac.String() {
		if err := ch.LinkSetHardwareAddr(cont, mac); err != nil {
			return fmt.Errorf("set MAC of %s: %w", e.IfName, err)
		}
	}
	if cont.Attrs().MTU != mtu {
		if err := ch.LinkSetMTU(cont, mtu); err != nil {
			return err
		}
	}
	if err := ensureAddrs(ch, cont, e.Address); err != nil {
		return fmt.Errorf("address %s on %s: %w", e.Address, e.IfName, err)
	}
	if err := ch.LinkSetUp(cont); err != nil {
		return err
	}
	if lo, err := netlink.FindLink(ch, "lo"); err == nil && lo != nil {
		_ = ch.LinkSetUp(lo)
	}
	if e.DefaultRoute {
		r := &vnl.Route{LinkIndex: cont.Attrs().Index, Gw: net.IP(e.Gateway.AsSlice()),
			Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0"))}
		if err := ch.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s on %s: %w", e.Gateway, e.IfName, err)
		}
	}
	return nil
}
