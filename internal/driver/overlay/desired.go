package overlay

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/ovnet/ov/internal/vxlan"
)

// desired computes the whole overlay state this host should have. It must stay cheap: the data plane
// calls it on every reconcile.
func (d *Driver) desired() vxlan.State {
	dead := map[string]netip.Addr{} // a dead member's gossip address: it counts only from its host's VTEP
	for _, m := range d.cfg.Members.Members() {
		if !m.Alive {
			dead[m.Name] = m.Addr.Addr()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var s vxlan.State
	names := make([]string, 0, len(d.st.Networks))
	for name := range d.st.Networks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ns := d.st.Networks[name]
		if len(ns.Local) == 0 {
			continue
		}
		subnet, err := netip.ParsePrefix(ns.Network.Subnet)
		if err != nil {
			d.log.Warn("network has no valid subnet; skipped", "network", name, "subnet", ns.Network.Subnet)
			continue
		}
		gw, _ := netip.ParseAddr(ns.Network.Gateway)
		st := vxlan.NetworkState{Network: vxlan.Network{
			Name: name, VNI: ns.Network.VNI, Subnet: subnet, Gateway: gw, MTU: ns.Network.MTU, Internal: ns.Network.Internal,
		}}
		for _, l := range ns.Local {
			ip, err := netip.ParseAddr(l.IP)
			if err != nil {
				continue
			}
			st.Endpoints = append(st.Endpoints, vxlan.Endpoint{ContainerID: l.Container, NetNSPath: l.Netns, IfName: l.IfName, IP: ip})
		}
		slices.SortFunc(st.Endpoints, func(a, b vxlan.Endpoint) int { return a.IP.Compare(b.IP) })
		vteps := map[netip.Addr]bool{}
		for _, ep := range ns.Remote {
			if ep.Host == d.cfg.Host {
				continue
			}
			ip, err := netip.ParseAddr(ep.IP)
			if err != nil {
				continue
			}
			vtepStr := ep.VTEP
			if h, ok := d.st.Hosts[ep.Host]; ok && h.Address != "" {
				vtepStr = h.Address
			}
			vtep, err := netip.ParseAddr(vtepStr)
			if a, ok := dead[ep.Host]; err != nil || vtep == d.cfg.Address || (ok && a == vtep) {
				continue
			}
			st.Peers = append(st.Peers, vxlan.Peer{IP: ip, VTEP: vtep})
			vteps[vtep] = true
		}
		slices.SortFunc(st.Peers, func(a, b vxlan.Peer) int { return a.IP.Compare(b.IP) })
		for v := range vteps {
			st.VTEPs = append(st.VTEPs, v)
		}
		slices.SortFunc(st.VTEPs, func(a, b netip.Addr) int { return a.Compare(b) })
		s.Networks = append(s.Networks, st)
	}
	return s
}
