package vxlan

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/netlink"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// pass is one reconcile of the host namespace.
type pass struct {
	d       *Driver
	h       netlink.Handle
	changes int
}

func (p *pass) change(what string, args ...any) {
	p.changes++
	p.d.log.Debug(what, args...)
}

// underlay is the interface holding LocalIP: VXLAN arrives on it, overlay MTUs derive from its MTU.
type underlay struct {
	name string
	mtu  int      // Config.UnderlayMTU, or the interface's MTU
	vnis []uint32 // VNIs of the VXLAN devices on Config.Port in the host namespace now
}

// underlay finds the interface holding LocalIP in the host namespace.
func (p *pass) underlay() (underlay, error) {
	addrs, err := p.h.AddrList(nil, unix.AF_INET)
	if err != nil {
		return underlay{}, fmt.Errorf("vxlan: list addresses: %w", err)
	}
	local := net.IP(p.d.cfg.LocalIP.AsSlice())
	links, err := p.h.LinkList()
	if err != nil {
		return underlay{}, fmt.Errorf("vxlan: list links: %w", err)
	}
	var vnis []uint32
	for _, l := range links {
		if v, ok := l.(*vnl.Vxlan); ok && v.Port == p.d.cfg.Port {
			vnis = append(vnis, uint32(v.VxlanId))
		}
	}
	for _, a := range addrs {
		if !a.IP.Equal(local) {
			continue
		}
		for _, l := range links {
			if l.Attrs().Index == a.LinkIndex {
				ul := underlay{name: l.Attrs().Name, mtu: l.Attrs().MTU, vnis: vnis}
				if p.d.cfg.UnderlayMTU != 0 {
					ul.mtu = p.d.cfg.UnderlayMTU
				}
				return ul, nil
			}
		}
	}
	return underlay{}, fmt.Errorf("vxlan: local address %s is on no interface of the host network namespace %q; set Config.LocalIP to this host's underlay address: %w", p.d.cfg.LocalIP, p.d.cfg.HostNetns, errdefs.ErrInvalidArgument)
}

// network sets up one network: VXLAN device, gateway macvlan, ARP and FDB entries, local endpoints.
func (p *pass) network(ns NetworkState, underlayMTU int) error {
	n := ns.Network
	mtu := n.MTU
	if mtu == 0 {
		mtu = underlayMTU - 50
		if n.Encrypted {
			mtu -= TunnelOverhead
		}
	}
	vx, err := p.vxlan(n, mtu)
	if err != nil {
		return err
	}
	if err := p.gateway(n, mtu, vx.Attrs().Index); err != nil {
		return err
	}
	if err := p.localnet(n, localnetWanted(ns)); err != nil {
		return err
	}
	if err := p.neighbours(vx, ns); err != nil {
		return err
	}
	if err := p.fdb(vx, ns); err != nil {
		return err
	}
	var errs []error
	for _, e := range ns.Endpoints {
		if err := p.endpoint(n, e, mtu, vx.Attrs().Index); err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", e.ContainerID, err))
		}
	}
	return errors.Join(errs...)
}

// isMacvlanOn tells whether l is a bridge-mode macvlan whose parent has index parent.
func isMacvlanOn(l vnl.Link, parent int) bool {
	m, ok := l.(*vnl.Macvlan)
	return ok && m.Mode == vnl.MACVLAN_MODE_BRIDGE && m.Attrs().ParentIndex == parent
}

// ensureLink creates link unless a link of that name and the right kind exists (ok decides); a link
// of that name that is not right is deleted and recreated. It returns the link as the kernel has it.
func (p *pass) ensureLink(h netlink.Handle, want vnl.Link, ok func(vnl.Link) bool) (vnl.Link, error) {
	name := want.Attrs().Name
	have, err := netlink.FindLink(h, name)
	if err != nil {
		return nil, err
	}
	if have != nil && !ok(have) {
		if err := h.LinkDel(have); err != nil {
			return nil, fmt.Errorf("delete %s %s to recreate it: %w", have.Type(), name, err)
		}
		p.change("deleted link to recreate it", "link", name)
		have = nil
	}
	if have == nil {
		if err := h.LinkAdd(want); err != nil {
			return nil, fmt.Errorf("create %s %s: %w", want.Type(), name, err)
		}
		p.change("created link", "link", name)
		if have, err = netlink.FindLink(h, name); err != nil {
			return nil, err
		} else if have == nil {
			return nil, fmt.Errorf("%s %s vanished right after it was created (someone else deletes ov's links?): %w", want.Type(), name, errdefs.ErrConflict)
		}
	}
	return have, nil
}

// tune sets MTU, MAC (if mac is given) and up on a link.
func (p *pass) tune(h netlink.Handle, l vnl.Link, mtu int, mac net.HardwareAddr) error {
	a := l.Attrs()
	if a.MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, a.Name, err)
		}
		p.change("set mtu", "link", a.Name, "mtu", mtu)
	}
	if mac != nil && !bytes.Equal(a.HardwareAddr, mac) {
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("set MAC %s on %s: %w", mac, a.Name, err)
		}
		p.change("set mac", "link", a.Name, "mac", mac)
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", a.Name, err)
		}
		p.change("set up", "link", a.Name)
	}
	return nil
}

// addresses makes want the only IPv4 address of l.
func (p *pass) addresses(h netlink.Handle, l vnl.Link, want netip.Prefix) error {
	have, err := h.AddrList(l, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	found := false
	for _, a := range have {
		ones, _ := a.Mask.Size()
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		if ip == want.Addr() && ones == want.Bits() {
			found = true
			continue
		}
		if err := h.AddrDel(l, &a); err != nil {
			return fmt.Errorf("remove address %s from %s: %w", a.IPNet, l.Attrs().Name, err)
		}
		p.change("removed address", "link", l.Attrs().Name, "addr", a.IPNet.String())
	}
	if !found {
		addr := &vnl.Addr{IPNet: &net.IPNet{IP: want.Addr().AsSlice(), Mask: net.CIDRMask(want.Bits(), 32)}}
		if err := h.AddrReplace(l, addr); err != nil {
			return fmt.Errorf("add address %s to %s: %w", want, l.Attrs().Name, err)
		}
		p.change("added address", "link", l.Attrs().Name, "addr", want)
	}
	return nil
}

// gateway makes the host's interface on the network: a bridge-mode macvlan on the VXLAN device with
// a stable MAC and the gateway address. Containers reach it directly through the macvlan's bridge
// mode; it routes the subnet in the host.
func (p *pass) gateway(n Network, mtu, vx int) error {
	name := GatewayName(n.VNI)
	mac := gatewayMAC(p.d.cfg.LocalIP, n.VNI)
	want := &vnl.Macvlan{LinkAttrs: vnl.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: mac, ParentIndex: vx}, Mode: vnl.MACVLAN_MODE_BRIDGE}
	gw, err := p.ensureLink(p.h, want, func(l vnl.Link) bool { return isMacvlanOn(l, vx) })
	if err != nil {
		return err
	}
	if err := p.tune(p.h, gw, mtu, mac); err != nil {
		return err
	}
	return p.addresses(p.h, gw, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()))
}

func (p *pass) vxlan(n Network, mtu int) (vnl.Link, error) {
	local := net.IP(p.d.localVTEP(n).AsSlice())
	want := &vnl.Vxlan{
		LinkAttrs: vnl.LinkAttrs{Name: VXLANName(n.VNI), MTU: mtu},
		VxlanId:   int(n.VNI),
		SrcAddr:   local,
		Port:      p.d.cfg.Port,
		Learning:  false,
		Proxy:     true,
		UDPCSum:   true,
	}
	vx, err := p.ensureLink(p.h, want, func(l vnl.Link) bool {
		v, ok := l.(*vnl.Vxlan)
		return ok && v.VxlanId == int(n.VNI) && v.SrcAddr.Equal(local) && v.Port == p.d.cfg.Port &&
			!v.Learning && v.Proxy && (v.Group == nil || v.Group.IsUnspecified())
	})
	if err != nil {
		return nil, err
	}
	if vx.Attrs().MasterIndex != 0 { // enslaved by someone (or by a bridge of ov before 0.x): the macvlans need it free
		if err := p.h.LinkSetMasterByIndex(vx, 0); err != nil {
			return nil, fmt.Errorf("release %s from its master: %w", vx.Attrs().Name, err)
		}
		p.change("released from master", "link", vx.Attrs().Name)
	}
	return vx, p.tune(p.h, vx, mtu, nil)
}

// neighbours makes the ARP entries of the VXLAN device exactly one permanent entry per remote peer.
func (p *pass) neighbours(vx vnl.Link, ns NetworkState) error {
	ix := vx.Attrs().Index
	want := map[netip.Addr]net.HardwareAddr{}
	for _, peer := range ns.Peers {
		if peer.VTEP != p.d.localVTEP(ns.Network) {
			want[peer.IP] = peer.mac()
		}
	}
	localIP := map[netip.Addr]bool{} // KeepPeers keeps no entry of a local container's address
	for _, e := range ns.Endpoints {
		localIP[e.IP] = true
	}
	withdrawn, err := p.withdrawnMACs(vx, ns) // nor of a MAC on a withdrawn VTEP
	if err != nil {
		return err
	}
	have, err := p.h.NeighList(ix, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("list neighbours of %s: %w", vx.Attrs().Name, err)
	}
	for _, n := range have {
		if n.LinkIndex != ix {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP.To4())
		mac, ok := want[ip]
		if ok && bytes.Equal(mac, n.HardwareAddr) && n.State&unix.NUD_PERMANENT != 0 {
			delete(want, ip) // already right
			continue
		}
		if ok {
			continue // NeighSet below replaces it
		}
		if ns.KeepPeers && !localIP[ip] && !withdrawn[n.HardwareAddr.String()] {
			continue // maybe a peer the caller has not heard of yet
		}
		if err := p.h.NeighDel(&vnl.Neigh{LinkIndex: ix, Family: unix.AF_INET, IP: n.IP}); err != nil {
			return fmt.Errorf("delete stale neighbour %s on %s: %w", n.IP, vx.Attrs().Name, err)
		}
		p.change("deleted neighbour", "link", vx.Attrs().Name, "ip", n.IP)
	}
	for ip, mac := range want {
		n := &vnl.Neigh{LinkIndex: ix, Family: unix.AF_INET, State: unix.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac}
		if err := p.h.NeighSet(n); err != nil {
			return fmt.Errorf("set neighbour %s -> %s on %s: %w", ip, mac, vx.Attrs().Name, err)
		}
		p.change("set neighbour", "link", vx.Attrs().Name, "ip", ip, "mac", mac)
	}
	return nil
}

// withdrawnMACs are, with KeepPeers and WithdrawVTEPs, the MACs the device's FDB sends to a
// withdrawn VTEP: their neighbour entries go.
func (p *pass) withdrawnMACs(vx vnl.Link, ns NetworkState) (map[string]bool, error) {
	out := map[string]bool{}
	if !ns.KeepPeers || len(ns.WithdrawVTEPs) == 0 {
		return out, nil
	}
	have, err := p.h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("list FDB of %s: %w", vx.Attrs().Name, err)
	}
	for _, n := range have {
		vtep, _ := netip.AddrFromSlice(n.IP.To4())
		if n.Flags&unix.NTF_SELF != 0 && slices.Contains(ns.WithdrawVTEPs, vtep) {
			out[n.HardwareAddr.String()] = true
		}
	}
	return out, nil
}

type fdbKey struct {
	mac  string
	vtep netip.Addr
}

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// fdb makes the self FDB entries of the VXLAN device exactly: MAC -> VTEP per remote peer, and
// 00:00:00:00:00:00 -> VTEP per other host serving the network (broadcast and unknown unicast).
func (p *pass) fdb(vx vnl.Link, ns NetworkState) error {
	ix := vx.Attrs().Index
	want := map[fdbKey]bool{}
	local := p.d.localVTEP(ns.Network)
	for _, peer := range ns.Peers {
		if peer.VTEP != local {
			want[fdbKey{peer.mac().String(), peer.VTEP}] = true
		}
	}
	for _, v := range remoteVTEPs(ns, local) {
		want[fdbKey{zeroMAC.String(), v}] = true
	}
	// With KeepPeers, an entry stays unless a listed peer's entry of the same MAC replaces it (the
	// peer moved to another VTEP) or a local container has the MAC.
	replaced := map[string]bool{}
	if ns.KeepPeers {
		for k := range want {
			if k.mac != zeroMAC.String() {
				replaced[k.mac] = true
			}
		}
		for _, e := range ns.Endpoints {
			replaced[e.mac().String()] = true
		}
	}
	have, err := p.h.NeighList(ix, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list FDB of %s: %w", vx.Attrs().Name, err)
	}
	for _, n := range have {
		if n.LinkIndex != ix || n.Flags&unix.NTF_SELF == 0 || n.IP == nil {
			continue // bridge (master) entries and the device's own addresses are not ours
		}
		vtep, _ := netip.AddrFromSlice(n.IP.To4())
		k := fdbKey{n.HardwareAddr.String(), vtep}
		if want[k] && n.State&unix.NUD_PERMANENT != 0 {
			delete(want, k)
			continue
		}
		if ns.KeepPeers && !want[k] && !replaced[k.mac] && !slices.Contains(ns.WithdrawVTEPs, vtep) {
			continue // maybe a peer (or, all zero, a host) the caller has not heard of yet
		}
		del := &vnl.Neigh{LinkIndex: ix, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF, HardwareAddr: n.HardwareAddr, IP: n.IP}
		if err := p.h.NeighDel(del); err != nil {
			return fmt.Errorf("delete stale FDB entry %s dst %s on %s: %w", n.HardwareAddr, n.IP, vx.Attrs().Name, err)
		}
		p.change("deleted fdb entry", "link", vx.Attrs().Name, "mac", n.HardwareAddr, "dst", n.IP)
	}
	for k := range want {
		mac, _ := net.ParseMAC(k.mac)
		n := &vnl.Neigh{LinkIndex: ix, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF, State: unix.NUD_PERMANENT, HardwareAddr: mac, IP: k.vtep.AsSlice()}
		set := p.h.NeighSet
		if bytes.Equal(mac, zeroMAC) {
			set = p.h.NeighAppend // one all-zero entry per VTEP
		}
		if err := set(n); err != nil {
			return fmt.Errorf("add FDB entry %s dst %s on %s: %w", mac, k.vtep, vx.Attrs().Name, err)
		}
		p.change("set fdb entry", "link", vx.Attrs().Name, "mac", mac, "dst", k.vtep)
	}
	return nil
}

// endpoint sets up a local container: a bridge-mode macvlan on the VXLAN device (index vx), created
// directly in the container's namespace and named IfName, with the address, MAC, MTU and default route.
func (p *pass) endpoint(n Network, e Endpoint, mtu, vx int) error {
	ch, err := p.d.nl.Handle(e.NetNSPath)
	if err != nil {
		return fmt.Errorf("container network namespace: %w", err)
	}
	defer ch.Close()
	cv, err := netlink.FindLink(ch, e.IfName)
	if err != nil {
		return err
	}
	if cv != nil && !isMacvlanOn(cv, vx) {
		if _, ok := cv.(*vnl.Macvlan); !ok {
			return fmt.Errorf("the container already has an interface %s (%s) that ov did not create; use another interface name: %w", e.IfName, cv.Type(), errdefs.ErrConflict)
		}
		if err := ch.LinkDel(cv); err != nil {
			return fmt.Errorf("delete macvlan %s whose parent or mode is wrong: %w", e.IfName, err)
		}
		p.change("deleted macvlan to recreate it", "link", e.IfName, "container", e.ContainerID)
		cv = nil
	}
	if cv == nil {
		fd, release, err := p.d.nl.Fd(e.NetNSPath)
		if err != nil {
			return err
		}
		mv := &vnl.Macvlan{
			LinkAttrs: vnl.LinkAttrs{Name: e.IfName, MTU: mtu, HardwareAddr: e.mac(), ParentIndex: vx, Namespace: vnl.NsFd(fd)},
			Mode:      vnl.MACVLAN_MODE_BRIDGE,
		}
		err = p.h.LinkAdd(mv)
		release()
		if err != nil {
			return fmt.Errorf("create macvlan %s in the container: %w", e.IfName, err)
		}
		p.change("created macvlan", "link", e.IfName, "container", e.ContainerID)
		if cv, err = netlink.FindLink(ch, e.IfName); err != nil {
			return err
		}
		if cv == nil {
			return fmt.Errorf("macvlan %s vanished right after it was created (container gone?): %w", e.IfName, errdefs.ErrConflict)
		}
	}
	if err := p.tune(ch, cv, mtu, e.mac()); err != nil {
		return err
	}
	if err := p.addresses(ch, cv, netip.PrefixFrom(e.IP, n.Subnet.Bits())); err != nil {
		return err
	}
	if n.Internal {
		return nil
	}
	routes, err := ch.RouteList(nil, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("list container routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
			return nil // a default route exists (maybe through another network): keep it
		}
	}
	if err := ch.RouteAdd(&vnl.Route{LinkIndex: cv.Attrs().Index, Gw: n.Gateway.AsSlice()}); err != nil {
		return fmt.Errorf("add default route via %s: %w", n.Gateway, err)
	}
	p.change("added default route", "container", e.ContainerID, "gw", n.Gateway)
	return nil
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

// removeStale deletes the gateways and VXLAN devices ov owns that active does not ask for (with a
// VXLAN device go the macvlans of its containers), and the bridges and veths of the previous design
// (ovbr-<vni>, ovep<hash>), which no network uses any more.
func (p *pass) removeStale(active []NetworkState) error {
	keep := map[string]bool{}
	for _, ns := range active {
		keep[GatewayName(ns.Network.VNI)] = true
		keep[VXLANName(ns.Network.VNI)] = true
	}
	links, err := p.h.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, prefix := range []string{legacyVethPrefix, legacyBridgePrefix, "ovgw-", "ovvx-"} {
		for _, l := range links {
			name := l.Attrs().Name
			if !strings.HasPrefix(name, prefix) || keep[name] {
				continue
			}
			if err := p.h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete stale %s: %w", name, err))
				continue
			}
			p.change("deleted stale link", "link", name)
		}
	}
	return errors.Join(errs...)
}

// detachGone deletes the macvlans of the containers set up by the previous pass that the State no
// longer lists on a network that stays (a disconnected, still running container); those of networks
// torn down on this host went with their VXLAN device, those of stopped containers with the namespace.
func (p *pass) detachGone(prev, now map[endpointKey]endpointLoc) error {
	var errs []error
	for k, loc := range prev {
		if _, ok := now[k]; ok {
			continue
		}
		if loc.published {
			p.flushConntrack(k.container, loc.ip)
		}
		vx, err := netlink.FindLink(p.h, VXLANName(k.vni))
		if err != nil || vx == nil {
			continue
		}
		ch, err := p.d.nl.Handle(loc.netns)
		if err != nil {
			continue // the container is gone, and its interface with it
		}
		if cv, err := netlink.FindLink(ch, loc.ifName); err == nil && cv != nil && isMacvlanOn(cv, vx.Attrs().Index) {
			if err := ch.LinkDel(cv); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("container %s: delete macvlan %s of the network it left: %w", k.container, loc.ifName, err))
			} else {
				p.change("deleted macvlan of a detached container", "container", k.container, "link", loc.ifName)
			}
		}
		ch.Close()
	}
	return errors.Join(errs...)
}

// keptVTEPs adds to the firewall view (lite, see liteOf) of each network of active with KeepPeers
// the hosts its kept FDB entries send to: the entries of a peer the caller has not heard of yet are
// of no use if the ingress filter drops what its host sends.
func (p *pass) keptVTEPs(active, lite []NetworkState) error {
	for i, ns := range active {
		if !ns.KeepPeers {
			continue
		}
		vx, err := netlink.FindLink(p.h, VXLANName(ns.Network.VNI))
		if err != nil || vx == nil {
			return err
		}
		have, err := p.h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			return fmt.Errorf("list FDB of %s: %w", vx.Attrs().Name, err)
		}
		vteps := slices.Clone(lite[i].VTEPs)
		for _, n := range have {
			v, _ := netip.AddrFromSlice(n.IP.To4())
			if n.Flags&unix.NTF_SELF != 0 && n.State&unix.NUD_PERMANENT != 0 && v.IsValid() && vtepProblem(v) == "" &&
				v != p.d.localVTEP(ns.Network) && !slices.Contains(ns.WithdrawVTEPs, v) {
				vteps = append(vteps, v)
			}
		}
		slices.SortFunc(vteps, netip.Addr.Compare)
		lite[i].VTEPs = slices.Compact(vteps)
	}
	return nil
}
