package netlink

import (
	"fmt"
	"net/netip"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route is an IPv4 route of a main table: where it leads and through which device.
type Route struct {
	Dst netip.Prefix
	Dev string
}

// Routes lists the IPv4 routes of h's namespace that have a destination prefix: default routes
// (which overlap everything and say nothing) are left out.
func Routes(h Handle) ([]Route, error) {
	rs, err := h.RouteList(nil, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	names := map[int]string{}
	if links, err := h.LinkList(); err == nil {
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
	}
	var out []Route
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(r.Dst.IP)
		bits, _ := r.Dst.Mask.Size()
		if !ok || bits == 0 {
			continue // a default route, however it is spelled
		}
		out = append(out, Route{Dst: netip.PrefixFrom(ip.Unmap(), bits).Masked(), Dev: names[r.LinkIndex]})
	}
	return out, nil
}

// LinkNames lists the interface names of the namespace at path.
func LinkNames(nss Namespaces, path string) ([]string, error) {
	h, err := nss.Handle(path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names, nil
}

// FindLink returns the link named name in h's namespace, or nil when there is none.
func FindLink(h Handle, name string) (vnl.Link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().Name == name {
			return l, nil
		}
	}
	return nil, nil
}
