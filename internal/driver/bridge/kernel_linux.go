package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
)

// linuxKernel implements kernel with netlink in the calling process's network namespace.
type linuxKernel struct {
	h *netlink.Handle
}

func newKernel() (kernel, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("network: open netlink: %w", err)
	}
	return &linuxKernel{h: h}, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

func (k *linuxKernel) routes() ([]hostRoute, error) {
	rs, err := k.h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	if links, err := k.h.LinkList(); err == nil {
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
	}
	var out []hostRoute
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		p, ok := netipPrefix(r.Dst)
		if !ok || p.Bits() == 0 {
			continue
		}
		out = append(out, hostRoute{Dst: p, Dev: names[r.LinkIndex]})
	}
	return out, nil
}

func (k *linuxKernel) uplinkMTU() (int, error) {
	rs, err := k.h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, err
	}
	for _, r := range rs {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
			l, err := k.h.LinkByIndex(r.LinkIndex)
			if err != nil {
				return 0, err
			}
			return l.Attrs().MTU, nil
		}
	}
	return 0, nil
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a, bits).Masked(), true
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
func ensureAddrs(h *netlink.Handle, link netlink.Link, want netip.Prefix) error {
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if p, ok := netipPrefix(a.IPNet); ok && a.IP.Equal(net.IP(want.Addr().AsSlice())) && p.Bits() == want.Bits() {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, link.Attrs().Name, err)
		}
	}
	return h.AddrReplace(link, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(want.Addr().AsSlice()), Mask: net.CIDRMask(want.Bits(), 32)}})
}

func (k *linuxKernel) ensureBridge(name string, addr netip.Prefix, mtu int) error {
	link, err := k.h.LinkByName(name)
	if isNotFound(err) {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
		if err := k.h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		link, err = k.h.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("look up bridge %s: %w", name, err)
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("%s exists but is a %s, not a bridge; remove it or choose another bridge name: %w", name, link.Type(), errdefs.ErrConflict)
	}
	if link.Attrs().MTU != mtu {
		if err := k.h.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set MTU of %s to %d: %w", name, mtu, err)
		}
	}
	if err := ensureAddrs(k.h, link, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr, name, err)
	}
	if err := k.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	if err := writeSysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	// 127.0.0.1:HOSTPORT is DNATed to a container: the packet keeps 127.0.0.1 as source until
	// POSTROUTING masquerades it, and the kernel routes such packets out of a device only with
	// route_localnet on it.
	return writeSysctl("net.ipv4.conf."+name+".route_localnet", "1")
}

func (k *linuxKernel) bridges() ([]string, error) {
	links, err := k.h.LinkList()
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

func (k *linuxKernel) deleteBridge(name string) error {
	link, err := k.h.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("%s is a %s, not a bridge; not deleting it", name, link.Type())
	}
	return k.h.LinkDel(link)
}

// ensureNetnsDir makes dir a shared mount point (as iproute2 does for /run/netns), so that the
// namespace bind mounts propagate to mount namespaces cloned later, and unmounting one propagates too.
func ensureNetnsDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s onto itself: %w", dir, err)
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	return nil
}

func isNetns(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return err
	}
	if st.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%s is not a namespace (no namespace is mounted there)", path)
	}
	return nil
}

func (k *linuxKernel) checkNetns(path string) error {
	if err := isNetns(path); err != nil {
		return err
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	return h.Close()
}

func (k *linuxKernel) ensureNetns(path string) error {
	if isNetns(path) != nil {
		if err := createNetns(path); err != nil {
			return err
		}
	}
	return inNetns(path, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		return h.LinkSetUp(lo)
	})
}

// createNetns creates a network namespace and bind-mounts it at path. The work happens on a locked OS
// thread that unshares its network namespace; if the thread cannot return to its original namespace it
// is left locked so the Go runtime discards it.
func createNetns(path string) error {
	if err := ensureNetnsDir(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		merr := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "none", unix.MS_BIND, "")
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("return to the host namespace: %w", err) // thread stays locked: discarded
			return
		}
		runtime.UnlockOSThread()
		if merr != nil {
			merr = fmt.Errorf("bind-mount namespace at %s: %w", path, merr)
		}
		errc <- merr
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

func (k *linuxKernel) deleteNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// inNetns runs fn with a netlink handle inside the namespace at path.
func inNetns(path string, fn func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	return fn(h)
}

func (k *linuxKernel) linkNames(path string) ([]string, error) {
	var out []string
	err := inNetns(path, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		for _, l := range links {
			out = append(out, l.Attrs().Name)
		}
		return err
	})
	return out, err
}

func (k *linuxKernel) deleteVeth(hostIf string) error {
	link, err := k.h.LinkByName(hostIf)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := k.h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", hostIf, err)
	}
	return nil
}

func (k *linuxKernel) ensureVeth(e *Endpoint, bridge string, mtu int) error {
	br, err := k.h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	mac, err := net.ParseMAC(e.MAC)
	if err != nil {
		return err
	}
	ns, err := netns.GetFromPath(e.Netns)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", e.Netns, err)
	}
	defer ns.Close()
	ch, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", e.Netns, err)
	}
	defer ch.Close()

	// Adopt an existing pair only if the container end is the peer of the host end.
	host, herr := k.h.LinkByName(e.HostIf)
	cont, cerr := ch.LinkByName(e.IfName)
	paired := false
	if herr == nil && cerr == nil && cont.Type() == "veth" && host.Type() == "veth" {
		// A veth's IFLA_LINK is its peer's index (in the peer's namespace).
		paired = cont.Attrs().ParentIndex == host.Attrs().Index && host.Attrs().ParentIndex == cont.Attrs().Index
	}
	if !paired {
		if herr == nil {
			if err := k.h.LinkDel(host); err != nil {
				return fmt.Errorf("delete stale %s: %w", e.HostIf, err)
			}
		}
		if cont, cerr = ch.LinkByName(e.IfName); cerr == nil {
			if cont.Type() != "veth" {
				return fmt.Errorf("namespace %s already has a %s interface %s; not replacing it: %w", e.Netns, cont.Type(), e.IfName, errdefs.ErrConflict)
			}
			if err := ch.LinkDel(cont); err != nil {
				return fmt.Errorf("delete stale %s in %s: %w", e.IfName, e.Netns, err)
			}
		}
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: e.HostIf, MTU: mtu}, PeerName: e.IfName,
			PeerHardwareAddr: mac, PeerNamespace: netlink.NsFd(int(ns)), PeerMTU: uint32(mtu)}
		if err := k.h.LinkAdd(v); err != nil {
			return fmt.Errorf("create veth %s/%s: %w", e.HostIf, e.IfName, err)
		}
		if host, err = k.h.LinkByName(e.HostIf); err != nil {
			return err
		}
		if cont, err = ch.LinkByName(e.IfName); err != nil {
			return err
		}
	}
	// Host end: a port of the bridge, up.
	if host.Attrs().MTU != mtu {
		if err := k.h.LinkSetMTU(host, mtu); err != nil {
			return err
		}
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := k.h.LinkSetMaster(host, br); err != nil {
			return fmt.Errorf("add %s to %s: %w", e.HostIf, bridge, err)
		}
	}
	// Hairpin: with br_netfilter, a container's packet to its own published port is DNATed at the
	// bridge and must be sent back out of the port it came in on.
	if err := k.h.LinkSetHairpin(host, true); err != nil {
		return fmt.Errorf("hairpin on %s: %w", e.HostIf, err)
	}
	if err := k.h.LinkSetUp(host); err != nil {
		return err
	}
	// Container end: MAC, MTU, address, up, default route.
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
	if lo, err := ch.LinkByName("lo"); err == nil {
		_ = ch.LinkSetUp(lo)
	}
	if e.DefaultRoute {
		r := &netlink.Route{LinkIndex: cont.Attrs().Index, Gw: net.IP(e.Gateway.AsSlice()),
			Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0"))}
		if err := ch.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s on %s: %w", e.Gateway, e.IfName, err)
		}
	}
	return nil
}

func (k *linuxKernel) flushConntrack(ip netip.Addr) error {
	var toOrFrom, from netlink.ConntrackFilter
	if err := toOrFrom.AddIP(netlink.ConntrackReplyAnyIP, net.IP(ip.AsSlice())); err != nil {
		return err
	}
	if err := from.AddIP(netlink.ConntrackOrigSrcIP, net.IP(ip.AsSlice())); err != nil {
		return err
	}
	_, err := k.h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, &toOrFrom, &from)
	return err
}
