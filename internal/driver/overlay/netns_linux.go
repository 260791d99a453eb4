package overlay

import (
	"fmt"
	"net/netip"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// links lists the interface names in the network namespace at path.
func links(path string) ([]string, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := vnl.NewHandleAt(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ls, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ls))
	for _, l := range ls {
		names = append(names, l.Attrs().Name)
	}
	return names, nil
}

// hostRoutes lists the IPv4 routes of the main table of the namespace the agent runs in (the host's).
func hostRoutes() ([]hostRoute, error) {
	rs, err := vnl.RouteList(nil, vnl.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list the host's routes: %w", err)
	}
	var out []hostRoute
	for _, r := range rs {
		if r.Dst == nil {
			continue // the default route overlaps everything and says nothing
		}
		ip, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		bits, _ := r.Dst.Mask.Size()
		if bits == 0 {
			continue // a default route, however it is spelled
		}
		dev := ""
		if l, err := vnl.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		out = append(out, hostRoute{Dst: netip.PrefixFrom(ip.Unmap(), bits), Dev: dev})
	}
	return out, nil
}
