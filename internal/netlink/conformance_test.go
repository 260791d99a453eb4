package netlink_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/testutil"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// conformance checks, against one implementation of Namespaces, the kernel behaviour ov relies on.
// host and ctr are two distinct, empty namespaces.
func conformance(t *testing.T, nss netlink.Namespaces, host, ctr string) {
	h, err := nss.Handle(host)
	must(t, err)
	defer h.Close()
	c, err := nss.Handle(ctr)
	must(t, err)
	defer c.Close()

	t.Run("bridge: create, EEXIST, MTU, MAC, address, up", func(t *testing.T) {
		mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
		must(t, h.LinkAdd(&vnl.Bridge{LinkAttrs: vnl.LinkAttrs{Name: "tbr0", MTU: 1400, HardwareAddr: mac}}))
		if err := h.LinkAdd(&vnl.Bridge{LinkAttrs: vnl.LinkAttrs{Name: "tbr0"}}); !errors.Is(err, unix.EEXIST) {
			t.Fatalf("second LinkAdd of tbr0: %v, want EEXIST", err)
		}
		br := find(t, h, "tbr0")
		if br.Type() != "bridge" || br.Attrs().MTU != 1400 || br.Attrs().HardwareAddr.String() != mac.String() {
			t.Fatalf("bridge: type %s mtu %d mac %s", br.Type(), br.Attrs().MTU, br.Attrs().HardwareAddr)
		}
		must(t, h.LinkSetMTU(br, 1300))
		must(t, h.LinkSetUp(br))
		a, _ := vnl.ParseAddr("10.9.0.1/24")
		must(t, h.AddrReplace(br, a))
		must(t, h.AddrReplace(br, a)) // replace is idempotent
		addrs, err := h.AddrList(br, unix.AF_INET)
		must(t, err)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.9.0.1/24" {
			t.Fatalf("addresses: %v", addrs)
		}
		br = find(t, h, "tbr0")
		if br.Attrs().MTU != 1300 || br.Attrs().Flags&net.FlagUp == 0 {
			t.Fatalf("after set: mtu %d flags %v", br.Attrs().MTU, br.Attrs().Flags)
		}
		must(t, h.AddrDel(br, &addrs[0]))
		if addrs, _ := h.AddrList(br, unix.AF_INET); len(addrs) != 0 {
			t.Fatalf("address still there after AddrDel: %v", addrs)
		}
	})

	t.Run("veth with its peer created in another namespace", func(t *testing.T) {
		fd, release, err := nss.Fd(ctr)
		must(t, err)
		br := find(t, h, "tbr0")
		mac := net.HardwareAddr{0x02, 0x42, 10, 9, 0, 2}
		err = h.LinkAdd(&vnl.Veth{LinkAttrs: vnl.LinkAttrs{Name: "tve0", MTU: 1300, MasterIndex: br.Attrs().Index},
			PeerName: "eth0", PeerNamespace: vnl.NsFd(fd), PeerHardwareAddr: mac, PeerMTU: 1300})
		release()
		must(t, err)
		hv, cv := find(t, h, "tve0"), find(t, c, "eth0")
		if hv.Attrs().ParentIndex != cv.Attrs().Index || cv.Attrs().ParentIndex != hv.Attrs().Index {
			t.Fatalf("veth ends do not name each other: host %d->%d, container %d->%d", hv.Attrs().Index, hv.Attrs().ParentIndex, cv.Attrs().Index, cv.Attrs().ParentIndex)
		}
		if hv.Attrs().MasterIndex != br.Attrs().Index || cv.Attrs().MTU != 1300 || cv.Attrs().HardwareAddr.String() != mac.String() {
			t.Fatalf("veth: master %d mtu %d mac %s", hv.Attrs().MasterIndex, cv.Attrs().MTU, cv.Attrs().HardwareAddr)
		}
		must(t, h.LinkSetHairpin(hv, true))
		must(t, c.LinkSetUp(cv))
		a, _ := vnl.ParseAddr("10.9.0.2/24")
		must(t, c.AddrReplace(cv, a))
		route := &vnl.Route{LinkIndex: cv.Attrs().Index, Gw: net.IP{10, 9, 0, 1}}
		must(t, c.RouteAdd(route))
		if err := c.RouteAdd(route); !errors.Is(err, unix.EEXIST) {
			t.Fatalf("second default route: %v, want EEXIST", err)
		}
		routes, err := c.RouteList(nil, unix.AF_INET)
		must(t, err)
		if !slices.ContainsFunc(routes, func(r vnl.Route) bool {
			return (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(net.IP{10, 9, 0, 1})
		}) {
			t.Fatalf("no default route via 10.9.0.1 in %v", routes)
		}
		_, all, _ := net.ParseCIDR("0.0.0.0/0")
		must(t, c.RouteReplace(&vnl.Route{LinkIndex: cv.Attrs().Index, Gw: net.IP{10, 9, 0, 1}, Dst: all})) // replacing is idempotent
		must(t, c.RouteReplace(&vnl.Route{LinkIndex: cv.Attrs().Index, Gw: net.IP{10, 9, 0, 1}, Dst: all}))
		_, far, _ := net.ParseCIDR("10.9.5.0/24")
		must(t, c.RouteAdd(&vnl.Route{LinkIndex: cv.Attrs().Index, Gw: net.IP{10, 9, 0, 1}, Dst: far}))
		sub, err := netlink.Routes(c)
		must(t, err)
		if !slices.Contains(sub, netlink.Route{Dst: netip.MustParsePrefix("10.9.5.0/24"), Dev: "eth0"}) ||
			slices.ContainsFunc(sub, func(r netlink.Route) bool { return r.Dst.Bits() == 0 }) {
			t.Fatalf("netlink.Routes = %v, want 10.9.5.0/24 on eth0 and no default route", sub)
		}
		var byIP vnl.ConntrackFilter
		must(t, byIP.AddIP(vnl.ConntrackOrigSrcIP, net.IP{10, 9, 0, 2}))
		if n, err := h.ConntrackDeleteFilters(vnl.ConntrackTable, unix.AF_INET, &byIP); err != nil || n != 0 {
			t.Fatalf("ConntrackDeleteFilters with no entries = %d, %v; want 0, nil", n, err)
		}
		must(t, h.LinkDel(hv))
		if l := findOpt(t, c, "eth0"); l != nil {
			t.Fatal("deleting the host end left the container end")
		}
	})

	t.Run("vxlan FDB and ARP entries", func(t *testing.T) {
		br := find(t, h, "tbr0")
		must(t, h.LinkAdd(&vnl.Vxlan{LinkAttrs: vnl.LinkAttrs{Name: "tvx0", MTU: 1300, MasterIndex: br.Attrs().Index},
			VxlanId: 77, SrcAddr: net.IP{192, 168, 99, 1}, Port: 4789, Proxy: true, UDPCSum: true}))
		vx := find(t, h, "tvx0").(*vnl.Vxlan)
		if vx.VxlanId != 77 || vx.Learning || !vx.Proxy || vx.Port != 4789 || !vx.SrcAddr.Equal(net.IP{192, 168, 99, 1}) {
			t.Fatalf("vxlan attributes: %+v", vx)
		}
		ix := vx.Attrs().Index
		zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
		m1 := net.HardwareAddr{0x02, 0x42, 10, 9, 0, 3}
		fdb := func(mac net.HardwareAddr, dst string) *vnl.Neigh {
			return &vnl.Neigh{LinkIndex: ix, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF, State: unix.NUD_PERMANENT, HardwareAddr: mac, IP: net.ParseIP(dst).To4()}
		}
		must(t, h.NeighAppend(fdb(zero, "192.168.99.2")))
		must(t, h.NeighAppend(fdb(zero, "192.168.99.3")))
		must(t, h.NeighSet(fdb(m1, "192.168.99.2")))
		must(t, h.NeighSet(fdb(m1, "192.168.99.3"))) // replaces the dst of m1
		checkFDB(t, h, ix, "00:00:00:00:00:00 192.168.99.2", "00:00:00:00:00:00 192.168.99.3", "02:42:0a:09:00:03 192.168.99.3")
		must(t, h.NeighDel(&vnl.Neigh{LinkIndex: ix, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF, HardwareAddr: zero, IP: net.IP{192, 168, 99, 2}}))
		checkFDB(t, h, ix, "00:00:00:00:00:00 192.168.99.3", "02:42:0a:09:00:03 192.168.99.3")

		arp := &vnl.Neigh{LinkIndex: ix, Family: unix.AF_INET, State: unix.NUD_PERMANENT, IP: net.IP{10, 9, 0, 3}, HardwareAddr: m1}
		must(t, h.NeighSet(arp))
		must(t, h.NeighSet(arp))
		ns, err := h.NeighList(ix, unix.AF_INET)
		must(t, err)
		if len(ns) != 1 || !ns[0].IP.Equal(arp.IP) || ns[0].HardwareAddr.String() != m1.String() || ns[0].State&unix.NUD_PERMANENT == 0 {
			t.Fatalf("ARP entries: %+v", ns)
		}
		must(t, h.NeighDel(&vnl.Neigh{LinkIndex: ix, Family: unix.AF_INET, IP: arp.IP}))
		if ns, _ := h.NeighList(ix, unix.AF_INET); len(ns) != 0 {
			t.Fatalf("ARP entries after delete: %+v", ns)
		}
		must(t, h.LinkDel(vx))
		must(t, h.LinkDel(find(t, h, "tbr0")))
	})

	t.Run("macvlan on a vxlan, one created in another namespace, gone with its parent", func(t *testing.T) {
		must(t, h.LinkAdd(&vnl.Vxlan{LinkAttrs: vnl.LinkAttrs{Name: "tvx1", MTU: 1400},
			VxlanId: 78, SrcAddr: net.IP{192, 168, 99, 1}, Port: 4789, Proxy: true}))
		vx := find(t, h, "tvx1")
		gwMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 9}
		must(t, h.LinkAdd(&vnl.Macvlan{LinkAttrs: vnl.LinkAttrs{Name: "tgw1", MTU: 1400, HardwareAddr: gwMAC, ParentIndex: vx.Attrs().Index},
			Mode: vnl.MACVLAN_MODE_BRIDGE}))
		fd, release, err := nss.Fd(ctr)
		must(t, err)
		mac := net.HardwareAddr{0x02, 0x42, 10, 9, 1, 2}
		err = h.LinkAdd(&vnl.Macvlan{LinkAttrs: vnl.LinkAttrs{Name: "eth1", MTU: 1400, HardwareAddr: mac, ParentIndex: vx.Attrs().Index,
			Namespace: vnl.NsFd(fd)}, Mode: vnl.MACVLAN_MODE_BRIDGE})
		release()
		must(t, err)
		if l := findOpt(t, h, "eth1"); l != nil {
			t.Fatal("the macvlan created for the other namespace is in the caller's")
		}
		for _, l := range []vnl.Link{find(t, h, "tgw1"), find(t, c, "eth1")} {
			m, ok := l.(*vnl.Macvlan)
			if !ok || m.Mode != vnl.MACVLAN_MODE_BRIDGE || m.Attrs().ParentIndex != vx.Attrs().Index || m.Attrs().MTU != 1400 {
				t.Fatalf("macvlan %s: %T mode %v parent %d (want %d) mtu %d", l.Attrs().Name, l, m.Mode, l.Attrs().ParentIndex, vx.Attrs().Index, l.Attrs().MTU)
			}
		}
		if got := find(t, c, "eth1").Attrs().HardwareAddr.String(); got != mac.String() {
			t.Fatalf("container macvlan MAC %s, want %s", got, mac)
		}
		must(t, h.LinkDel(vx))
		if findOpt(t, h, "tgw1") != nil || findOpt(t, c, "eth1") != nil {
			t.Fatal("deleting the vxlan left a macvlan on it")
		}
	})
}

func namespaceLifecycle(t *testing.T, nss netlink.Namespaces, fresh, notNS string) {
	t.Run("create and remove a namespace", func(t *testing.T) {
		if h, err := nss.Handle(notNS); err == nil {
			h.Close()
			t.Fatalf("Handle(%s) succeeded on a path that is not a namespace", notNS)
		}
		must(t, nss.Create(fresh))
		n, err := nss.Handle(fresh)
		must(t, err)
		defer n.Close()
		lo := find(t, n, "lo")
		if lo.Attrs().Flags&net.FlagUp != 0 {
			t.Fatal("lo of a new namespace is up")
		}
		must(t, n.LinkSetUp(lo))
		must(t, nss.Create(fresh)) // a namespace already: left as it is
		if names, err := netlink.LinkNames(nss, fresh); err != nil || !slices.Equal(names, []string{"lo"}) {
			t.Fatalf("links after Create again: %v, %v; want lo", names, err)
		}
		if find(t, n, "lo").Attrs().Flags&net.FlagUp == 0 {
			t.Fatal("Create again reset the namespace (lo is down)")
		}
		must(t, nss.Remove(fresh))
		if h, err := nss.Handle(fresh); err == nil {
			h.Close()
			t.Fatal("Handle succeeded on a removed namespace")
		}
		must(t, nss.Remove(fresh)) // missing: not an error
	})
}

func checkFDB(t *testing.T, h netlink.Handle, ix int, want ...string) {
	t.Helper()
	ns, err := h.NeighList(ix, unix.AF_BRIDGE)
	must(t, err)
	var got []string
	for _, n := range ns {
		if n.LinkIndex == ix && n.Flags&unix.NTF_SELF != 0 && n.IP != nil {
			got = append(got, n.HardwareAddr.String()+" "+n.IP.String())
		}
	}
	slices.Sort(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("FDB entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func findOpt(t *testing.T, h netlink.Handle, name string) vnl.Link {
	t.Helper()
	links, err := h.LinkList()
	must(t, err)
	for _, l := range links {
		if l.Attrs().Name == name {
			return l
		}
	}
	return nil
}

func find(t *testing.T, h netlink.Handle, name string) vnl.Link {
	t.Helper()
	l := findOpt(t, h, name)
	if l == nil {
		t.Fatalf("no link %s", name)
	}
	return l
}

func TestFakeConformance(t *testing.T) {
	f := netlink.NewFake()
	f.AddNamespace("/host")
	f.AddNamespace("/ctr")
	conformance(t, f, "/host", "/ctr")
	namespaceLifecycle(t, f, "/fresh", "/not-a-namespace")
}

func TestKernelConformance(t *testing.T) {
	testutil.RequireRoot(t)
	host, ctr := testutil.Netns(t, "nlh"), testutil.Netns(t, "nlc")
	conformance(t, netlink.System{}, "/run/netns/"+host, "/run/netns/"+ctr)
	dir := filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) }) // Create made it a shared mount
	notNS := filepath.Join(t.TempDir(), "file")
	must(t, os.WriteFile(notNS, nil, 0o644))
	namespaceLifecycle(t, netlink.System{}, filepath.Join(dir, "fresh"), notNS)
}
