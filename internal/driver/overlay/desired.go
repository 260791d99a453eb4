package overlay

import (
	"fmt"
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
	tunnel := map[string]vxlan.TunnelPeer{}
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
		// What does not parse is left out here, and reported by the data plane with its own problems
		// (logged once, shown by ovctl network inspect): one bad entry costs that entry only.
		subnet, err := netip.ParsePrefix(ns.Network.Subnet)
		gw, _ := netip.ParseAddr(ns.Network.Gateway)
		st := vxlan.NetworkState{Network: vxlan.Network{
			Name: name, VNI: ns.Network.VNI, Subnet: subnet, Gateway: gw, MTU: ns.Network.MTU, Internal: ns.Network.Internal,
			Encrypted: ns.Network.Encrypted,
		}}
		if err != nil {
			st.LeftOut = append(st.LeftOut, vxlan.Problem{Network: name, Kind: vxlan.KindNetwork, Entry: fmt.Sprintf("VNI %d", ns.Network.VNI),
				Reason: fmt.Sprintf("subnet %q is not a CIDR; the network's record on the controller is damaged: recreate the network", ns.Network.Subnet)})
			s.Networks = append(s.Networks, st)
			continue
		}
		for _, l := range ns.Local {
			ip, err := netip.ParseAddr(l.IP)
			if err != nil {
				st.LeftOut = append(st.LeftOut, vxlan.Problem{Network: name, Kind: vxlan.KindEndpoint, Entry: fmt.Sprintf("%s at %q", l.Container, l.IP),
					Reason: "its address does not parse; disconnect and reconnect the container"})
				continue
			}
			st.Endpoints = append(st.Endpoints, vxlan.Endpoint{ContainerID: l.Container, NetNSPath: l.Netns, IfName: l.IfName, IP: ip, Ports: vxlanPorts(l.Ports)})
		}
		slices.SortFunc(st.Endpoints, func(a, b vxlan.Endpoint) int { return a.IP.Compare(b.IP) })
		var peerHost []string // the host of each peer, in order
		for _, ep := range ns.Remote {
			if ep.Host == d.cfg.Host {
				continue
			}
			vtepStr := ep.VTEP
			if h, ok := d.st.Hosts[ep.Host]; ok && h.Address != "" {
				vtepStr = h.Address
			}
			ip, ierr := netip.ParseAddr(ep.IP)
			vtep, verr := netip.ParseAddr(vtepStr)
			if ierr != nil || verr != nil {
				st.LeftOut = append(st.LeftOut, vxlan.Problem{Network: name, Kind: vxlan.KindPeer, Entry: fmt.Sprintf("%q on %q", ep.IP, vtepStr),
					Reason: fmt.Sprintf("container %s of host %q has an address or VTEP that does not parse; fix the host's registration or release the endpoint", ep.Container, ep.Host)})
				continue
			}
			if a, ok := dead[ep.Host]; vtep == d.cfg.Address || (ok && a == vtep) {
				continue
			}
			st.Peers = append(st.Peers, vxlan.Peer{IP: ip, VTEP: vtep})
			peerHost = append(peerHost, ep.Host)
		}
		if ns.Network.Encrypted {
			d.encrypted(&st, tunnel, peerHost)
		}
		vteps := map[netip.Addr]bool{}
		for _, p := range st.Peers {
			vteps[p.VTEP] = true
		}
		slices.SortFunc(st.Peers, func(a, b vxlan.Peer) int { return a.IP.Compare(b.IP) })
		for v := range vteps {
			st.VTEPs = append(st.VTEPs, v)
		}
		slices.SortFunc(st.VTEPs, func(a, b netip.Addr) int { return a.Compare(b) })
		s.Networks = append(s.Networks, st)
	}
	s.TunnelPeers = tunnelPeers(tunnel)
	return s
}
