package overlay

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/ovnet/ov/internal/vxlan"
)

// desired computes the whole overlay state this host should have. It must stay cheap: the data plane
// calls it on every complete reconcile.
func (d *Driver) desired() vxlan.State {
	dead := d.deadMembers()
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
		if st, ok := d.networkLocked(name, dead, tunnel); ok {
			s.Networks = append(s.Networks, st)
		}
	}
	s.TunnelPeers = tunnelPeers(tunnel)
	return s
}

// desiredNetworks computes the desired state of the named networks alone, as desired() has them
// (networks without a local container left out), without tunnel peers: the data plane's reconcile of
// the networks a watch event changed (vxlan.Driver.RunNetworks), which costs their peers only.
func (d *Driver) desiredNetworks(names []string) vxlan.State {
	dead := d.deadMembers()
	d.mu.Lock()
	defer d.mu.Unlock()
	var s vxlan.State
	tunnel := map[string]vxlan.TunnelPeer{}
	for _, name := range names {
		if st, ok := d.networkLocked(name, dead, tunnel); ok {
			s.Networks = append(s.Networks, st)
		}
	}
	return s
}

// deadMembers maps each dead member to its gossip address: it counts only from its host's VTEP.
func (d *Driver) deadMembers() map[string]netip.Addr {
	dead := map[string]netip.Addr{}
	for _, m := range d.cfg.Members.Members() {
		if !m.Alive {
			dead[m.Name] = m.Addr.Addr()
		}
	}
	return dead
}

// networkLocked computes the desired state of one network (false: it has no local container here or
// does not exist), adding its hosts to the tunnel's peers when it is encrypted. d.mu is held.
func (d *Driver) networkLocked(name string, dead map[string]netip.Addr, tunnel map[string]vxlan.TunnelPeer) (vxlan.NetworkState, bool) {
	ns, ok := d.st.Networks[name]
	if !ok || len(ns.Local) == 0 {
		return vxlan.NetworkState{}, false
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
		return st, true
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
	if st.KeepPeers = d.keepPeersLocked(name, ns); st.KeepPeers {
		for _, a := range dead { // a dead host's entries go all the same
			if ns.Network.Encrypted && d.cfg.Keys != nil {
				a = d.cfg.Keys.PeerAddr(a)
			}
			st.WithdrawVTEPs = append(st.WithdrawVTEPs, a)
		}
		slices.SortFunc(st.WithdrawVTEPs, netip.Addr.Compare)
	}
	return st, true
}

// catchUpWarn is how long after start a network's watch may take to catch up before the agent says
// so in its log (it keeps the network's remote entries all the same: see keepPeersLocked).
const catchUpWarn = 60 * time.Second

// keepPeersLocked tells whether the network's remote entries in the kernel are kept although its
// peers do not list them: from the start of the process until its watch has caught up (a snapshot, or
// the progress event that ends a resumed watch's replay: caughtUp, set by apply). Until then the
// peers come from the state file, which may lack the last events before the agent stopped (the saver
// writes at most every 250 ms): deleting the entries of a peer the file does not know would cut a
// live container off until the watch replays it. Adds and updates go ahead. It is not bounded: when
// the controller stays unreachable, the entries stay as the previous agent left them, which is the
// state of the cluster the agent last knew, and deleting on stale data is what would cut traffic;
// after catchUpWarn the agent logs it once. A dead host's entries still go (WithdrawVTEPs), and the
// entries of a network that goes away from this host go with its device, as before. d.mu is held.
func (d *Driver) keepPeersLocked(name string, ns *netState) bool {
	if ns.caughtUp {
		return false
	}
	now := time.Now()
	if ns.keepSince.IsZero() {
		ns.keepSince = now
	}
	if !ns.keepWarned && now.Sub(ns.keepSince) > catchUpWarn {
		ns.keepWarned = true
		d.log.Warn("the network's endpoint watch has not caught up since the agent started; its remote kernel entries are kept as they were (none is deleted, new ones are added) until it does: check that the controller is reachable",
			"network", name, "since", ns.keepSince)
	}
	return true
}
