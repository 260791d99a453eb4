package netlink

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Fake is an in-memory Namespaces for unit tests. Namespaces exist once added with AddNamespace
// (the empty path, the current namespace, always exists). It models what ov relies on: link names
// are unique per namespace (EEXIST), deleting one end of a veth deletes the other, a macvlan may be
// created in another namespace (LinkAttrs.Namespace) than its parent (ParentIndex, in the caller's
// namespace) and goes when its parent goes, deleting a link drops its addresses, routes and neighbours, FDB entries are keyed by (link, MAC, dst) with NeighSet
// replacing every dst of a MAC and NeighAppend adding one.
type Fake struct {
	mu     sync.Mutex
	spaces map[string]*fakeNS
	fds    map[int]string
	nextFd int
	nextIx int
	macSeq int
}

type fakeLink struct {
	link     vnl.Link // private copy
	macOK    bool     // the MAC was chosen by the caller (rendered), not generated
	parentNS string   // macvlan: the namespace of its parent (ParentIndex)
	hairpin  bool     // bridge port: LinkSetHairpin
}

type fakeNS struct {
	links     map[int]*fakeLink
	addrs     []vnl.Addr
	routes    []vnl.Route
	neighs    map[int]map[neighKey][]fakeNeigh // by link, then by what identifies an entry (neighKeyOf)
	neighSeq  uint64                           // creation order of neighbour entries, for NeighList
	conntrack []*vnl.ConntrackFlow
}

// NewFake returns a Fake holding only the current namespace ("").
func NewFake() *Fake {
	return &Fake{spaces: map[string]*fakeNS{"": newFakeNS()}, fds: map[int]string{}, nextFd: 1000, nextIx: 1}
}

func newFakeNS() *fakeNS {
	return &fakeNS{links: map[int]*fakeLink{}, neighs: map[int]map[neighKey][]fakeNeigh{}}
}

// neighKey groups the neighbour entries that sameNeigh can match: an ARP entry by its link and IP,
// FDB entries by their link and MAC (one per dst). Writes and deletes then cost the size of a group,
// not of the whole table, as in the kernel's hash tables, and listing one link's entries costs that
// link's entries: a host with 10,000 peers is programmed in linear time (cmd/ovbench-scale measures it).
type neighKey struct {
	link, family int
	key          string
}

type fakeNeigh struct {
	n   vnl.Neigh
	seq uint64
}

func neighKeyOf(n *vnl.Neigh) neighKey {
	fam := neighFamily(n)
	if fam == unix.AF_BRIDGE {
		return neighKey{n.LinkIndex, fam, string(n.HardwareAddr)}
	}
	return neighKey{n.LinkIndex, fam, string(n.IP.To16())}
}

// neighList returns the entries of link (0: every link) that keep match, in the order they were
// created.
func (ns *fakeNS) neighList(link int, keep func(*vnl.Neigh) bool) []vnl.Neigh {
	var all []fakeNeigh
	for ix, groups := range ns.neighs {
		if link != 0 && ix != link {
			continue
		}
		for _, g := range groups {
			for _, e := range g {
				if keep(&e.n) {
					all = append(all, e)
				}
			}
		}
	}
	slices.SortFunc(all, func(a, b fakeNeigh) int { return int(a.seq) - int(b.seq) })
	out := make([]vnl.Neigh, len(all))
	for i, e := range all {
		out[i] = e.n
	}
	return out
}

var _ Namespaces = (*Fake)(nil)

// AddNamespace creates an empty namespace at path.
func (f *Fake) AddNamespace(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spaces[path] == nil {
		f.spaces[path] = newFakeNS()
	}
}

// DelNamespace removes the namespace at path; veths with a peer there lose that peer, as in the kernel.
func (f *Fake) DelNamespace(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ns := f.spaces[path]
	if ns == nil {
		return
	}
	for ix := range ns.links {
		f.delLocked(path, ix)
	}
	delete(f.spaces, path)
}

// Create adds a namespace at path holding a loopback interface lo (down), as the kernel makes one;
// an existing namespace is left as it is.
func (f *Fake) Create(path string) error {
	f.mu.Lock()
	exists := f.spaces[path] != nil
	f.mu.Unlock()
	if exists {
		return nil
	}
	f.AddNamespace(path)
	return f.AddLink(path, &vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: "lo", MTU: 65536}})
}

// Remove is DelNamespace; a missing namespace is not an error.
func (f *Fake) Remove(path string) error {
	f.DelNamespace(path)
	return nil
}

// AddConntrack adds a connection-tracking entry to the namespace at path.
func (f *Fake) AddConntrack(path string, flow *vnl.ConntrackFlow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ns := f.spaces[path]; ns != nil {
		ns.conntrack = append(ns.conntrack, flow)
	}
}

// Conntrack lists the connection-tracking entries of the namespace at path.
func (f *Fake) Conntrack(path string) []*vnl.ConntrackFlow {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ns := f.spaces[path]; ns != nil {
		return slices.Clone(ns.conntrack)
	}
	return nil
}

// AddLink adds a link (e.g. the underlay interface) with its addresses to the namespace at path.
func (f *Fake) AddLink(path string, link vnl.Link, addrs ...string) error {
	h, err := f.Handle(path)
	if err != nil {
		return err
	}
	if err := h.LinkAdd(link); err != nil {
		return err
	}
	for _, a := range addrs {
		ad, err := vnl.ParseAddr(a)
		if err != nil {
			return err
		}
		if err := h.AddrReplace(link, ad); err != nil {
			return err
		}
	}
	return nil
}

// Handle returns a handle on the fake namespace at path.
func (f *Fake) Handle(path string) (Handle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spaces[path] == nil {
		return nil, fmt.Errorf("fake netlink: open network namespace %s: %w", path, unix.ENOENT)
	}
	return &fakeHandle{f: f, path: path}, nil
}

// Fd returns a token that LinkAdd accepts as vnl.NsFd for the namespace at path.
func (f *Fake) Fd(path string) (int, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spaces[path] == nil {
		return -1, nil, fmt.Errorf("fake netlink: open network namespace %s: %w", path, unix.ENOENT)
	}
	f.nextFd++
	fd := f.nextFd
	f.fds[fd] = path
	return fd, func() { f.mu.Lock(); delete(f.fds, fd); f.mu.Unlock() }, nil
}

type fakeHandle struct {
	f    *Fake
	path string
}

func (h *fakeHandle) Close() {}

func (h *fakeHandle) ns() (*fakeNS, error) {
	ns := h.f.spaces[h.path]
	if ns == nil {
		return nil, fmt.Errorf("fake netlink: namespace %s is gone: %w", h.path, unix.ENOENT)
	}
	return ns, nil
}

func copyLink(l vnl.Link) vnl.Link {
	switch v := l.(type) {
	case *vnl.Bridge:
		c := *v
		return &c
	case *vnl.Vxlan:
		c := *v
		c.SrcAddr = slices.Clone(v.SrcAddr)
		return &c
	case *vnl.Veth:
		c := *v
		return &c
	case *vnl.Macvlan:
		c := *v
		c.MACAddrs = nil
		return &c
	case *vnl.Device:
		c := *v
		return &c
	case *vnl.Dummy:
		c := *v
		return &c
	}
	panic(fmt.Sprintf("fake netlink: unsupported link type %T", l))
}

func (h *fakeHandle) LinkList() ([]vnl.Link, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return nil, err
	}
	var out []vnl.Link
	for _, ix := range sortedKeys(ns.links) {
		out = append(out, copyLink(ns.links[ix].link))
	}
	return out, nil
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

func (ns *fakeNS) byName(name string) *fakeLink {
	for _, l := range ns.links {
		if l.link.Attrs().Name == name {
			return l
		}
	}
	return nil
}

// find resolves the caller's link by index, then by name.
func (ns *fakeNS) find(l vnl.Link) (*fakeLink, error) {
	if l == nil {
		return nil, fmt.Errorf("fake netlink: nil link: %w", unix.EINVAL)
	}
	if fl := ns.links[l.Attrs().Index]; fl != nil {
		return fl, nil
	}
	if fl := ns.byName(l.Attrs().Name); fl != nil && l.Attrs().Index == 0 {
		return fl, nil
	}
	return nil, fmt.Errorf("fake netlink: link %q (index %d) not found: %w", l.Attrs().Name, l.Attrs().Index, unix.ENODEV)
}

func (f *Fake) genMAC() net.HardwareAddr {
	f.macSeq++
	return net.HardwareAddr{0xfe, 0, 0, 0, byte(f.macSeq >> 8), byte(f.macSeq)}
}

func (h *fakeHandle) LinkAdd(link vnl.Link) error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return err
	}
	a := link.Attrs()
	if a.Name == "" || len(a.Name) > 15 {
		return fmt.Errorf("fake netlink: link name %q: %w", a.Name, unix.EINVAL)
	}
	if _, other := link.(*vnl.Macvlan); (!other || a.Namespace == nil) && ns.byName(a.Name) != nil {
		return fmt.Errorf("fake netlink: link %q: %w", a.Name, unix.EEXIST) // (a macvlan made elsewhere: checked there)
	}
	if a.MasterIndex != 0 {
		if m := ns.links[a.MasterIndex]; m == nil || m.link.Type() != "bridge" {
			return fmt.Errorf("fake netlink: master %d of %q is not a bridge: %w", a.MasterIndex, a.Name, unix.EINVAL)
		}
	}
	c := copyLink(link)
	ca := c.Attrs()
	if m, ok := c.(*vnl.Macvlan); ok && ca.MTU == 0 && ns.links[m.ParentIndex] != nil {
		ca.MTU = ns.links[m.ParentIndex].link.Attrs().MTU // the kernel's default: the parent's
	}
	if ca.MTU == 0 {
		ca.MTU = 1500
	}
	macOK := len(ca.HardwareAddr) != 0
	if !macOK {
		ca.HardwareAddr = h.f.genMAC()
	}
	switch v := c.(type) {
	case *vnl.Veth:
		return h.addVethLocked(ns, v, macOK)
	case *vnl.Macvlan:
		return h.addMacvlanLocked(ns, v, macOK)
	}
	ca.Index = h.f.nextIx
	h.f.nextIx++
	ns.links[ca.Index] = &fakeLink{link: c, macOK: macOK}
	return nil
}

// nsByFd resolves a namespace token from Fd; what names the link (veth peer, macvlan) for errors.
func (f *Fake) nsByFd(what string, ns vnl.NsFd) (string, error) {
	p, ok := f.fds[int(ns)]
	if !ok {
		return "", fmt.Errorf("fake netlink: %s: bad namespace fd %d: %w", what, ns, unix.EBADF)
	}
	return p, nil
}

// addVethLocked adds both ends of veth c (a private copy) to ns and to the peer's namespace.
func (h *fakeHandle) addVethLocked(ns *fakeNS, v *vnl.Veth, macOK bool) error {
	ca := v.Attrs()
	peerPath := h.path
	if v.PeerNamespace != nil {
		fd, ok := v.PeerNamespace.(vnl.NsFd)
		if !ok {
			return fmt.Errorf("fake netlink: veth %q: peer namespace must be an NsFd: %w", ca.Name, unix.EINVAL)
		}
		p, err := h.f.nsByFd(fmt.Sprintf("veth %q", ca.Name), fd)
		if err != nil {
			return err
		}
		peerPath = p
	}
	pns := h.f.spaces[peerPath]
	if pns == nil {
		return fmt.Errorf("fake netlink: veth %q: peer namespace gone: %w", ca.Name, unix.ENOENT)
	}
	if v.PeerName == "" || pns.byName(v.PeerName) != nil || (peerPath == h.path && v.PeerName == ca.Name) {
		return fmt.Errorf("fake netlink: veth peer %q: %w", v.PeerName, unix.EEXIST)
	}
	ca.Index = h.f.nextIx
	h.f.nextIx++
	peer := &vnl.Veth{LinkAttrs: vnl.NewLinkAttrs(), PeerName: ca.Name}
	pa := peer.Attrs()
	pa.Name = v.PeerName
	pa.MTU = ca.MTU
	if v.PeerMTU != 0 {
		pa.MTU = int(v.PeerMTU)
	}
	pa.HardwareAddr = v.PeerHardwareAddr
	peerMACOK := len(pa.HardwareAddr) != 0
	if !peerMACOK {
		pa.HardwareAddr = h.f.genMAC()
	}
	pa.Index = h.f.nextIx
	h.f.nextIx++
	pa.ParentIndex = ca.Index
	pa.Namespace = h.path // remembered to find the other end
	ca.ParentIndex = pa.Index
	ca.Namespace = peerPath
	v.PeerNamespace, v.PeerHardwareAddr, v.PeerMTU = nil, nil, 0
	pns.links[pa.Index] = &fakeLink{link: peer, macOK: peerMACOK}
	ns.links[ca.Index] = &fakeLink{link: v, macOK: macOK}
	return nil
}

// addMacvlanLocked adds macvlan m (a private copy) on its parent in ns, inside ns or in the namespace
// its LinkAttrs.Namespace names.
func (h *fakeHandle) addMacvlanLocked(ns *fakeNS, m *vnl.Macvlan, macOK bool) error {
	ca := m.Attrs()
	parent := ns.links[ca.ParentIndex]
	if parent == nil {
		return fmt.Errorf("fake netlink: macvlan %q: parent %d not found: %w", ca.Name, ca.ParentIndex, unix.ENODEV)
	}
	dst := ns
	if ca.Namespace != nil {
		fd, ok := ca.Namespace.(vnl.NsFd)
		if !ok {
			return fmt.Errorf("fake netlink: macvlan %q: namespace must be an NsFd: %w", ca.Name, unix.EINVAL)
		}
		p, err := h.f.nsByFd(fmt.Sprintf("macvlan %q", ca.Name), fd)
		if err == nil && h.f.spaces[p] == nil {
			err = fmt.Errorf("fake netlink: macvlan %q: bad namespace fd %d: %w", ca.Name, fd, unix.EBADF)
		}
		if err != nil {
			return err
		}
		dst = h.f.spaces[p]
		if dst.byName(ca.Name) != nil {
			return fmt.Errorf("fake netlink: link %q: %w", ca.Name, unix.EEXIST)
		}
	}
	if ca.MTU > parent.link.Attrs().MTU {
		return fmt.Errorf("fake netlink: macvlan %q: MTU %d above its parent's %d: %w", ca.Name, ca.MTU, parent.link.Attrs().MTU, unix.EINVAL)
	}
	ca.Namespace = nil
	ca.Index = h.f.nextIx
	h.f.nextIx++
	dst.links[ca.Index] = &fakeLink{link: m, macOK: macOK, parentNS: h.path}
	return nil
}

func (h *fakeHandle) LinkDel(link vnl.Link) error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return err
	}
	fl, err := ns.find(link)
	if err != nil {
		return err
	}
	h.f.delLocked(h.path, fl.link.Attrs().Index)
	return nil
}

// delLocked deletes link ix of namespace path, its peer, and everything that hangs on them.
func (f *Fake) delLocked(path string, ix int) {
	ns := f.spaces[path]
	fl := ns.links[ix]
	if fl == nil {
		return
	}
	delete(ns.links, ix)
	ns.addrs = slices.DeleteFunc(ns.addrs, func(a vnl.Addr) bool { return a.LinkIndex == ix })
	ns.routes = slices.DeleteFunc(ns.routes, func(r vnl.Route) bool { return r.LinkIndex == ix })
	delete(ns.neighs, ix)
	for _, l := range ns.links {
		if l.link.Attrs().MasterIndex == ix {
			l.link.Attrs().MasterIndex = 0
		}
	}
	if _, ok := fl.link.(*vnl.Veth); ok {
		a := fl.link.Attrs()
		if pns := f.spaces[a.Namespace.(string)]; pns != nil && pns.links[a.ParentIndex] != nil {
			f.delLocked(a.Namespace.(string), a.ParentIndex)
		}
	}
	for p, other := range f.spaces { // the macvlans on it, wherever they are
		for oix, l := range other.links {
			if l.parentNS == path && l.link.Attrs().ParentIndex == ix {
				f.delLocked(p, oix)
			}
		}
	}
}

func (h *fakeHandle) modify(link vnl.Link, fn func(*fakeNS, *fakeLink) error) error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return err
	}
	fl, err := ns.find(link)
	if err != nil {
		return err
	}
	return fn(ns, fl)
}

func (h *fakeHandle) LinkSetUp(link vnl.Link) error {
	return h.modify(link, func(_ *fakeNS, fl *fakeLink) error {
		fl.link.Attrs().Flags |= net.FlagUp
		fl.link.Attrs().OperState = vnl.OperUp
		return nil
	})
}

func (h *fakeHandle) LinkSetMTU(link vnl.Link, mtu int) error {
	return h.modify(link, func(_ *fakeNS, fl *fakeLink) error {
		if mtu < 68 || mtu > 65535 {
			return fmt.Errorf("fake netlink: mtu %d: %w", mtu, unix.EINVAL)
		}
		fl.link.Attrs().MTU = mtu
		return nil
	})
}

func (h *fakeHandle) LinkSetMasterByIndex(link vnl.Link, masterIndex int) error {
	return h.modify(link, func(ns *fakeNS, fl *fakeLink) error {
		if masterIndex != 0 {
			if m := ns.links[masterIndex]; m == nil || m.link.Type() != "bridge" {
				return fmt.Errorf("fake netlink: master %d is not a bridge: %w", masterIndex, unix.EINVAL)
			}
		}
		fl.link.Attrs().MasterIndex = masterIndex
		return nil
	})
}

func (h *fakeHandle) LinkSetHardwareAddr(link vnl.Link, hw net.HardwareAddr) error {
	return h.modify(link, func(_ *fakeNS, fl *fakeLink) error {
		fl.link.Attrs().HardwareAddr = slices.Clone(hw)
		fl.macOK = true
		return nil
	})
}

func (h *fakeHandle) LinkSetHairpin(link vnl.Link, mode bool) error {
	return h.modify(link, func(_ *fakeNS, fl *fakeLink) error {
		fl.hairpin = mode
		return nil
	})
}

func (h *fakeHandle) AddrList(link vnl.Link, family int) ([]vnl.Addr, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return nil, err
	}
	ix := 0
	if link != nil {
		fl, err := ns.find(link)
		if err != nil {
			return nil, err
		}
		ix = fl.link.Attrs().Index
	}
	var out []vnl.Addr
	for _, a := range ns.addrs {
		if (ix == 0 || a.LinkIndex == ix) && familyOf(a.IP) == family {
			out = append(out, a)
		}
	}
	return out, nil
}

func familyOf(ip net.IP) int {
	if ip.To4() != nil {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func (h *fakeHandle) AddrReplace(link vnl.Link, addr *vnl.Addr) error {
	return h.modify(link, func(ns *fakeNS, fl *fakeLink) error {
		ix := fl.link.Attrs().Index
		a := vnl.Addr{IPNet: &net.IPNet{IP: slices.Clone(addr.IP), Mask: slices.Clone(addr.Mask)}, LinkIndex: ix}
		for i, o := range ns.addrs {
			if o.LinkIndex == ix && o.IP.Equal(a.IP) {
				ns.addrs[i] = a
				return nil
			}
		}
		ns.addrs = append(ns.addrs, a)
		return nil
	})
}

func (h *fakeHandle) AddrDel(link vnl.Link, addr *vnl.Addr) error {
	return h.modify(link, func(ns *fakeNS, fl *fakeLink) error {
		n := len(ns.addrs)
		ns.addrs = slices.DeleteFunc(ns.addrs, func(o vnl.Addr) bool {
			return o.LinkIndex == fl.link.Attrs().Index && o.IP.Equal(addr.IP)
		})
		if len(ns.addrs) == n {
			return fmt.Errorf("fake netlink: address %s not found: %w", addr.IPNet, unix.EADDRNOTAVAIL)
		}
		return nil
	})
}

func (h *fakeHandle) RouteList(link vnl.Link, family int) ([]vnl.Route, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return nil, err
	}
	var out []vnl.Route
	for _, r := range ns.routes {
		if link == nil || r.LinkIndex == link.Attrs().Index {
			out = append(out, r)
		}
	}
	return out, nil
}

func routeKey(r *vnl.Route) string {
	if r.Dst == nil {
		return "default"
	}
	return r.Dst.String()
}

func (h *fakeHandle) RouteAdd(route *vnl.Route) error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return err
	}
	if ns.links[route.LinkIndex] == nil {
		return fmt.Errorf("fake netlink: route via link %d: %w", route.LinkIndex, unix.ENODEV)
	}
	for _, r := range ns.routes {
		if routeKey(&r) == routeKey(route) {
			return fmt.Errorf("fake netlink: route %s: %w", routeKey(route), unix.EEXIST)
		}
	}
	ns.routes = append(ns.routes, *route)
	return nil
}

func (h *fakeHandle) RouteReplace(route *vnl.Route) error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return err
	}
	if ns.links[route.LinkIndex] == nil {
		return fmt.Errorf("fake netlink: route via link %d: %w", route.LinkIndex, unix.ENODEV)
	}
	ns.routes = slices.DeleteFunc(ns.routes, func(r vnl.Route) bool { return routeKey(&r) == routeKey(route) })
	ns.routes = append(ns.routes, *route)
	return nil
}

func (h *fakeHandle) ConntrackDeleteFilters(_ vnl.ConntrackTableType, _ vnl.InetFamily, filters ...vnl.CustomConntrackFilter) (uint, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return 0, err
	}
	n := len(ns.conntrack)
	ns.conntrack = slices.DeleteFunc(ns.conntrack, func(flow *vnl.ConntrackFlow) bool {
		return slices.ContainsFunc(filters, func(f vnl.CustomConntrackFilter) bool { return f.MatchConntrackFlow(flow) })
	})
	return uint(n - len(ns.conntrack)), nil
}

func (h *fakeHandle) NeighList(linkIndex, family int) ([]vnl.Neigh, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return nil, err
	}
	return ns.neighList(linkIndex, func(n *vnl.Neigh) bool { return n.Family == family }), nil
}

func neighFamily(n *vnl.Neigh) int {
	if n.Family != 0 {
		return n.Family
	}
	return familyOf(n.IP)
}

// sameNeigh: ARP entries are keyed by IP, FDB entries by MAC and (when given) dst.
func sameNeigh(a, b *vnl.Neigh, withDst bool) bool {
	if a.LinkIndex != b.LinkIndex || neighFamily(a) != neighFamily(b) {
		return false
	}
	if neighFamily(a) == unix.AF_BRIDGE {
		return bytes.Equal(a.HardwareAddr, b.HardwareAddr) && (!withDst || b.IP == nil || a.IP.Equal(b.IP))
	}
	return a.IP.Equal(b.IP)
}

func (h *fakeHandle) neighWrite(n *vnl.Neigh, appendOnly bool) error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return err
	}
	if ns.links[n.LinkIndex] == nil {
		return fmt.Errorf("fake netlink: neighbour on link %d: %w", n.LinkIndex, unix.ENODEV)
	}
	c := *n
	c.Family = neighFamily(n)
	c.IP = slices.Clone(n.IP)
	c.HardwareAddr = slices.Clone(n.HardwareAddr)
	k := neighKeyOf(&c)
	groups := ns.neighs[c.LinkIndex]
	if groups == nil {
		groups = map[neighKey][]fakeNeigh{}
		ns.neighs[c.LinkIndex] = groups
	}
	g := groups[k]
	if appendOnly {
		for _, o := range g {
			if sameNeigh(&o.n, &c, true) {
				return nil
			}
		}
	} else {
		g = slices.DeleteFunc(g, func(o fakeNeigh) bool { return sameNeigh(&o.n, &c, false) })
	}
	ns.neighSeq++
	groups[k] = append(g, fakeNeigh{n: c, seq: ns.neighSeq})
	return nil
}

func (h *fakeHandle) NeighSet(n *vnl.Neigh) error    { return h.neighWrite(n, false) }
func (h *fakeHandle) NeighAppend(n *vnl.Neigh) error { return h.neighWrite(n, true) }

func (h *fakeHandle) NeighDel(n *vnl.Neigh) error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	ns, err := h.ns()
	if err != nil {
		return err
	}
	k := neighKeyOf(n)
	groups := ns.neighs[n.LinkIndex]
	g := groups[k]
	l := len(g)
	g = slices.DeleteFunc(g, func(o fakeNeigh) bool { return sameNeigh(&o.n, n, true) })
	if len(g) == l {
		return fmt.Errorf("fake netlink: neighbour %s %s not found: %w", n.IP, n.HardwareAddr, unix.ENOENT)
	}
	if len(g) == 0 {
		delete(groups, k)
	} else {
		groups[k] = g
	}
	return nil
}

// Render describes the namespace at path as sorted lines: links (with the attributes ov sets;
// generated MACs and interface indexes are left out so that the order of creation does not show),
// addresses, routes, ARP neighbours and FDB entries.
func (f *Fake) Render(path string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ns := f.spaces[path]
	if ns == nil {
		return "(no namespace)\n"
	}
	name := func(ix int) string {
		if l := ns.links[ix]; l != nil {
			return l.link.Attrs().Name
		}
		return fmt.Sprintf("#%d", ix)
	}
	var lines []string
	for _, fl := range ns.links {
		a := fl.link.Attrs()
		s := fmt.Sprintf("link %s %s mtu=%d", a.Name, fl.link.Type(), a.MTU)
		if a.Flags&net.FlagUp != 0 {
			s += " up"
		}
		if a.MasterIndex != 0 {
			s += " master=" + name(a.MasterIndex)
		}
		if fl.macOK {
			s += " mac=" + a.HardwareAddr.String()
		}
		if fl.hairpin {
			s += " hairpin"
		}
		switch v := fl.link.(type) {
		case *vnl.Vxlan:
			s += fmt.Sprintf(" vni=%d local=%s port=%d learning=%t proxy=%t", v.VxlanId, v.SrcAddr, v.Port, v.Learning, v.Proxy)
			if v.Group != nil {
				s += " group=" + v.Group.String()
			}
		case *vnl.Veth:
			peer := "?"
			if pns := f.spaces[a.Namespace.(string)]; pns != nil && pns.links[a.ParentIndex] != nil {
				peer = pns.links[a.ParentIndex].link.Attrs().Name
			}
			s += fmt.Sprintf(" peer=%s@%q", peer, a.Namespace)
		case *vnl.Macvlan:
			parent := "?"
			if pns := f.spaces[fl.parentNS]; pns != nil && pns.links[a.ParentIndex] != nil {
				parent = pns.links[a.ParentIndex].link.Attrs().Name
			}
			mode := fmt.Sprint(int(v.Mode))
			if v.Mode == vnl.MACVLAN_MODE_BRIDGE {
				mode = "bridge"
			}
			s += fmt.Sprintf(" parent=%s@%q mode=%s", parent, fl.parentNS, mode)
		}
		lines = append(lines, s)
	}
	for _, a := range ns.addrs {
		lines = append(lines, fmt.Sprintf("addr %s %s", name(a.LinkIndex), a.IPNet))
	}
	for _, r := range ns.routes {
		lines = append(lines, fmt.Sprintf("route %s via %s dev %s", routeKey(&r), r.Gw, name(r.LinkIndex)))
	}
	for _, n := range ns.neighList(0, func(*vnl.Neigh) bool { return true }) {
		if n.Family == unix.AF_BRIDGE {
			lines = append(lines, fmt.Sprintf("fdb %s %s dst %s flags=%#x state=%#x", name(n.LinkIndex), n.HardwareAddr, n.IP, n.Flags, n.State))
		} else {
			lines = append(lines, fmt.Sprintf("neigh %s %s lladdr %s flags=%#x state=%#x", name(n.LinkIndex), n.IP, n.HardwareAddr, n.Flags, n.State))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}
