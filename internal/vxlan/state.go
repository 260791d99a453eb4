package vxlan

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
)

// Network is one overlay network as the data plane needs it.
type Network struct {
	Name     string       // for messages and logs
	VNI      uint32       // 1..16777215; names the VXLAN device (ovvx-<vni>) and gateway (ovgw-<vni>)
	Subnet   netip.Prefix // IPv4 subnet of the network
	Gateway  netip.Addr   // address inside Subnet, put on the gateway interface of every host serving the network
	MTU      int          // 0: derived, underlay MTU - 50
	Internal bool         // no MASQUERADE, no forwarding out of the network, no default route
	// Encrypted networks run through Config.Tunnel: their peers' and VTEPs' addresses are tunnel
	// addresses, their VXLAN never leaves or enters the host by another interface.
	Encrypted bool
}

// Peer is a remote endpoint: a container on another host.
type Peer struct {
	IP   netip.Addr
	MAC  net.HardwareAddr // nil: derived from IP (see MACFromIP)
	VTEP netip.Addr       // underlay address of the host it runs on
}

// Endpoint is a local container's attachment to a network.
type Endpoint struct {
	ContainerID string
	NetNSPath   string           // the container's network namespace, e.g. /proc/PID/ns/net
	IfName      string           // name inside the container, e.g. eth0
	IP          netip.Addr       // inside Network.Subnet
	MAC         net.HardwareAddr // nil: derived from IP (see MACFromIP)
	Ports       []Port           // published on this host (-p); ignored on an internal network
}

// NetworkState is the desired state of one network on this host.
type NetworkState struct {
	Network   Network
	Endpoints []Endpoint   // local containers; with none, the network is torn down on this host
	Peers     []Peer       // remote endpoints (entries pointing at LocalIP are ignored)
	VTEPs     []netip.Addr // underlay addresses of the hosts serving the network (LocalIP is ignored);
	// the VTEPs of Peers are added implicitly
	// LeftOut lists entries the caller could not even put in the state (an address that does not
	// parse): the Driver reports them with its own Problems. One of Kind KindNetwork leaves the whole
	// network out.
	LeftOut []Problem
	// KeepPeers: Peers may be incomplete (the caller's copy of the network is older than the
	// controller's, e.g. read from a state file after a restart, until its watch has caught up), so
	// the reconcile adds and updates the peers' neighbour and FDB entries but deletes none that the
	// kernel has and Peers does not list: deleting on stale data would cut a live peer off. An entry
	// that a listed peer or a local container replaces (its MAC moved to another VTEP, its address
	// taken) is still replaced.
	KeepPeers bool
	// WithdrawVTEPs are, with KeepPeers, hosts whose entries go all the same (dead hosts): an FDB
	// entry to one of them, and the neighbour entry of its MAC, are deleted unless Peers lists them.
	WithdrawVTEPs []netip.Addr
}

// State is the desired overlay state of the whole host. Reconcile makes the kernel match it exactly.
type State struct {
	Networks []NetworkState
	// TunnelPeers are the hosts Config.Tunnel carries the encrypted networks to.
	TunnelPeers []TunnelPeer
}

// GatewayName is the name of the host's gateway interface (a macvlan on the VXLAN device) of the
// network with this VNI.
func GatewayName(vni uint32) string { return fmt.Sprintf("ovgw-%d", vni) }

// VXLANName is the name of the VXLAN device of the network with this VNI.
func VXLANName(vni uint32) string { return fmt.Sprintf("ovvx-%d", vni) }

// The links of the previous design (a Linux bridge per network, a veth pair per container), deleted
// on sight.
const (
	legacyBridgePrefix = "ovbr-"
	legacyVethPrefix   = "ovep"
)

// endpointKey and endpointLoc remember where a reconcile put a container's interface.
type endpointKey struct {
	vni       uint32
	container string
}

type endpointLoc struct {
	netns, ifName string
	ip            netip.Addr // flushed from conntrack when the endpoint goes, if it published ports
	published     bool
}

// MACFromIP derives an endpoint's MAC from its IPv4 address: 02:42:a.b.c.d (locally administered).
func MACFromIP(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return net.HardwareAddr{0x02, 0x42, a[0], a[1], a[2], a[3]}
}

// gatewayMAC is a stable per-host, per-network MAC for the gateway interface: the same across
// restarts and recreation (no ARP cache in the containers goes stale) and different between hosts.
func gatewayMAC(local netip.Addr, vni uint32) net.HardwareAddr {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", local, vni))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

func (p Peer) mac() net.HardwareAddr {
	if len(p.MAC) != 0 {
		return p.MAC
	}
	return MACFromIP(p.IP)
}

func (e Endpoint) mac() net.HardwareAddr {
	if len(e.MAC) != 0 {
		return e.MAC
	}
	return MACFromIP(e.IP)
}

var ifNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// The kinds of entry a Problem leaves out.
const (
	KindNetwork  = "network"   // the whole network: not set up on this host
	KindEndpoint = "container" // a local container's interface
	KindPeer     = "peer"      // a remote endpoint's ARP and FDB entries
	KindVTEP     = "vtep"      // another host's flood entry (and its place in the VXLAN ingress filter)
)

// Problem is an entry of the desired State that the data plane leaves out, and why. The rest of the
// state is programmed all the same: one bad entry costs that entry, not the host's overlay.
type Problem struct {
	Network string // the network's name
	Kind    string // KindNetwork, KindEndpoint, KindPeer or KindVTEP
	Entry   string // which one: "VNI 100", "<container ID> at 10.1.0.2", "10.1.0.3 on 192.168.77.2", a VTEP
	Reason  string // what is wrong and what to do
}

func (p Problem) String() string {
	return fmt.Sprintf("overlay network %q: %s %s left out: %s", p.Network, p.Kind, p.Entry, p.Reason)
}

// Validate reports every problem of the state (see Sanitize) as one ErrInvalidArgument error; nil when
// the whole state can be programmed.
func (s State) Validate() error {
	_, probs := s.Sanitize()
	var errs []error
	for _, p := range probs {
		errs = append(errs, invalid("%s", p))
	}
	return errors.Join(errs...)
}

// Sanitize splits the state into what can be programmed and the Problems of the rest, deterministically
// (the outcome does not depend on the order of the lists):
//   - a network with a bad VNI, subnet, gateway or MTU is left out whole, and so are all networks that
//     share one VNI (their traffic would mix); the other networks are kept;
//   - a container, peer or VTEP with a bad field (address outside the subnet, the network's or the
//     gateway's address, no unicast IPv4 VTEP, no interface name) is left out;
//   - when several entries claim one address or MAC (or several local endpoints one container ID), a
//     local container wins over remote peers (it exists here; the peer is the controller's word about
//     another host), and between equals none is kept: sending to either could reach the wrong
//     container. Identical peer entries count once.
func (s State) Sanitize() (State, []Problem) {
	out := State{TunnelPeers: s.TunnelPeers}
	var probs []Problem
	vnis := map[uint32][]string{}
	for _, ns := range s.Networks {
		vnis[ns.Network.VNI] = append(vnis[ns.Network.VNI], ns.Network.Name)
	}
	for _, ns := range s.Networks {
		n := ns.Network
		probs = append(probs, ns.LeftOut...)
		if slices.ContainsFunc(ns.LeftOut, func(p Problem) bool { return p.Kind == KindNetwork }) {
			continue
		}
		why := networkProblem(n)
		if others := slices.DeleteFunc(slices.Clone(vnis[n.VNI]), func(s string) bool { return s == n.Name }); why == "" && len(others) > 0 {
			slices.Sort(others)
			why = fmt.Sprintf("VNI %d is also used by network %s, and the traffic of networks sharing a VNI would mix: none of them is set up on this host until each has its own VNI", n.VNI, strings.Join(quoteAll(others), ", "))
		}
		if why != "" {
			probs = append(probs, Problem{Network: n.Name, Kind: KindNetwork, Entry: fmt.Sprintf("VNI %d", n.VNI), Reason: why})
			continue
		}
		kept, p := sanitizeNetwork(ns)
		out.Networks = append(out.Networks, kept)
		probs = append(probs, p...)
	}
	return out, probs
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// networkProblem says what is wrong with the network itself ("" when nothing).
func networkProblem(n Network) string {
	switch {
	case n.VNI == 0 || n.VNI > 1<<24-1:
		return fmt.Sprintf("VNI %d is out of range; use 1-16777215", n.VNI)
	case !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() || n.Subnet.Bits() > 30:
		return fmt.Sprintf("subnet %s is not an IPv4 prefix of /30 or shorter", n.Subnet)
	case !n.Subnet.Contains(n.Gateway):
		return fmt.Sprintf("gateway %s is not inside subnet %s", n.Gateway, n.Subnet)
	case n.MTU != 0 && (n.MTU < 576 || n.MTU > 65535):
		return fmt.Sprintf("MTU %d is out of range; use 576-65535 or 0 to derive it", n.MTU)
	}
	return ""
}

// ipProblem says why ip cannot be an endpoint's address on n ("" when it can).
func ipProblem(n Network, ip netip.Addr) string {
	switch {
	case !n.Subnet.Contains(ip):
		return fmt.Sprintf("address %s is outside subnet %s", ip, n.Subnet)
	case ip == n.Subnet.Masked().Addr():
		return fmt.Sprintf("address %s is the subnet's network address", ip)
	case ip == lastAddr(n.Subnet):
		return fmt.Sprintf("address %s is the subnet's broadcast address", ip)
	case ip == n.Gateway:
		return fmt.Sprintf("address %s is the network's gateway", ip)
	}
	return ""
}

// vtepProblem says why v cannot be another host's VTEP ("" when it can).
func vtepProblem(v netip.Addr) string {
	switch {
	case !v.IsValid():
		return "there is no VTEP address (its host registered none)"
	case !v.Is4():
		return fmt.Sprintf("VTEP %s is not an IPv4 address", v)
	case v.IsUnspecified() || v.IsMulticast() || v.IsLoopback() || v == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Sprintf("VTEP %s is not a unicast address another host can have; the host must register its underlay address", v)
	}
	return ""
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | (uint32(1)<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (e Endpoint) entry() string { return fmt.Sprintf("%s at %s", e.ContainerID, e.IP) }
func (p Peer) entry() string     { return fmt.Sprintf("%s on %s", p.IP, p.VTEP) }

// sanitizeNetwork leaves out the bad and conflicting entries of a well-formed network.
func sanitizeNetwork(ns NetworkState) (NetworkState, []Problem) {
	n := ns.Network
	var probs []Problem
	leave := func(kind, entry, format string, args ...any) {
		probs = append(probs, Problem{Network: n.Name, Kind: kind, Entry: entry, Reason: fmt.Sprintf(format, args...)})
	}
	var eps []Endpoint
	for _, e := range ns.Endpoints {
		why := ipProblem(n, e.IP)
		if e.ContainerID == "" || e.NetNSPath == "" || !ifNameRE.MatchString(e.IfName) {
			why = fmt.Sprintf("it needs a container ID, a netns path and an interface name of 1-15 characters (got %q, %q)", e.NetNSPath, e.IfName)
		}
		if why != "" {
			leave(KindEndpoint, e.entry(), "%s", why)
			continue
		}
		eps = append(eps, e)
	}
	// Local claims on addresses and MACs, before local conflicts are settled: a peer never takes an
	// address or MAC a container of this host claims, even when that container is left out itself.
	localIP, localMAC := map[netip.Addr]string{}, map[string]string{}
	for _, e := range eps {
		localIP[e.IP], localMAC[e.mac().String()] = e.ContainerID, e.ContainerID
	}
	eps = dropShared(eps, func(e Endpoint) string { return e.ContainerID }, Endpoint.entry, func(e Endpoint, k string, others []string) {
		leave(KindEndpoint, e.entry(), "container %s is listed %d times on this network: none of its entries is set up; disconnect and reconnect it", k, len(others)+1)
	})
	for _, kind := range []struct {
		what string
		key  func(Endpoint) string
	}{{"address", func(e Endpoint) string { return e.IP.String() }}, {"MAC", func(e Endpoint) string { return e.mac().String() }}} {
		eps = dropShared(eps, kind.key, Endpoint.entry, func(e Endpoint, k string, others []string) {
			leave(KindEndpoint, e.entry(), "its %s %s is also claimed by container %s on this host: none of them is set up until the %s is unique; disconnect one (ovctl network disconnect)", kind.what, k, strings.Join(others, ", "), kind.what)
		})
	}
	peers := sanitizePeers(ns, localIP, localMAC, leave)
	var vteps []netip.Addr
	for _, v := range ns.VTEPs {
		if why := vtepProblem(v); why != "" {
			leave(KindVTEP, v.String(), "%s", why)
			continue
		}
		vteps = append(vteps, v)
	}
	ns.Endpoints, ns.Peers, ns.VTEPs, ns.LeftOut = eps, peers, vteps, nil
	return ns, probs
}

// sanitizePeers leaves out the bad peers, those claiming an address or MAC of a local container, and
// all of those claiming one address or MAC between them.
func sanitizePeers(ns NetworkState, localIP map[netip.Addr]string, localMAC map[string]string, leave func(kind, entry, format string, args ...any)) []Peer {
	n := ns.Network
	var peers []Peer
	seen := map[string]bool{}
	for _, p := range ns.Peers {
		why := ipProblem(n, p.IP)
		if v := vtepProblem(p.VTEP); v != "" {
			why = v
		} else if c, ok := localIP[p.IP]; ok && why == "" {
			why = fmt.Sprintf("address %s is claimed by container %s on this host, and a local container goes before a remote peer; the peer's endpoint is stale or allocated twice: release it on the controller", p.IP, c)
		} else if c, ok := localMAC[p.mac().String()]; ok && why == "" {
			why = fmt.Sprintf("MAC %s is claimed by container %s on this host, and a local container goes before a remote peer", p.mac(), c)
		}
		if why != "" {
			leave(KindPeer, p.entry(), "%s", why)
			continue
		}
		if k := p.entry() + " " + p.mac().String(); !seen[k] { // an identical entry twice is harmless
			seen[k] = true
			peers = append(peers, p)
		}
	}
	for _, kind := range []struct {
		what string
		key  func(Peer) string
	}{{"address", func(p Peer) string { return p.IP.String() }}, {"MAC", func(p Peer) string { return p.mac().String() }}} {
		peers = dropShared(peers, kind.key, Peer.entry, func(p Peer, k string, others []string) {
			leave(KindPeer, p.entry(), "its %s %s is also claimed by peer %s: none of them is programmed, so that no traffic goes to the wrong host, until the controller holds one endpoint per %s (release the stale one)", kind.what, k, strings.Join(others, ", "), kind.what)
		})
	}
	return peers
}

// dropShared removes the items whose key another item has too, calling drop for each with the entries
// of the others (sorted). The result does not depend on the order of items.
func dropShared[T any](items []T, key func(T) string, entry func(T) string, drop func(it T, key string, others []string)) []T {
	claims := map[string][]string{}
	for _, it := range items {
		claims[key(it)] = append(claims[key(it)], entry(it))
	}
	return slices.DeleteFunc(items, func(it T) bool {
		k := key(it)
		if len(claims[k]) < 2 {
			return false
		}
		others := slices.Clone(claims[k])
		if i := slices.Index(others, entry(it)); i >= 0 {
			others = slices.Delete(others, i, i+1)
		}
		slices.Sort(others)
		drop(it, k, others)
		return true
	})
}
