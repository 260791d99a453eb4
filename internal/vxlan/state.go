package vxlan

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"regexp"

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
}

// NetworkState is the desired state of one network on this host.
type NetworkState struct {
	Network   Network
	Endpoints []Endpoint   // local containers; with none, the network is torn down on this host
	Peers     []Peer       // remote endpoints (entries pointing at LocalIP are ignored)
	VTEPs     []netip.Addr // underlay addresses of the hosts serving the network (LocalIP is ignored);
	// the VTEPs of Peers are added implicitly
}

// State is the desired overlay state of the whole host. Reconcile makes the kernel match it exactly.
type State struct {
	Networks []NetworkState
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

type endpointLoc struct{ netns, ifName string }

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

// Validate checks the state: every network well formed, VNIs unique, endpoints and
// peers inside their subnet with unique IPs.
func (s State) Validate() error {
	vnis := map[uint32]string{}
	for _, ns := range s.Networks {
		n := ns.Network
		if n.VNI == 0 || n.VNI > 1<<24-1 {
			return invalid("overlay network %q: VNI %d is out of range; use 1-16777215", n.Name, n.VNI)
		}
		if other, ok := vnis[n.VNI]; ok {
			return invalid("overlay network %q: VNI %d is also used by network %q; give each network its own VNI", n.Name, n.VNI, other)
		}
		vnis[n.VNI] = n.Name
		if !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() || n.Subnet.Bits() > 30 {
			return invalid("overlay network %q: subnet %s is not an IPv4 prefix of /30 or shorter", n.Name, n.Subnet)
		}
		if !n.Subnet.Contains(n.Gateway) {
			return invalid("overlay network %q: gateway %s is not inside subnet %s", n.Name, n.Gateway, n.Subnet)
		}
		if n.MTU != 0 && (n.MTU < 576 || n.MTU > 65535) {
			return invalid("overlay network %q: MTU %d is out of range; use 576-65535 or 0 to derive it", n.Name, n.MTU)
		}
		ips := map[netip.Addr]string{n.Gateway: "the gateway"}
		ids := map[string]bool{}
		for _, e := range ns.Endpoints {
			if e.ContainerID == "" || e.NetNSPath == "" || !ifNameRE.MatchString(e.IfName) {
				return invalid("overlay network %q: endpoint %q needs a container ID, a netns path and an interface name of 1-15 characters (got %q, %q)", n.Name, e.ContainerID, e.NetNSPath, e.IfName)
			}
			if ids[e.ContainerID] {
				return invalid("overlay network %q: container %s is listed twice", n.Name, e.ContainerID)
			}
			ids[e.ContainerID] = true
			if err := checkIP(n, ips, e.IP, "container "+e.ContainerID); err != nil {
				return err
			}
		}
		for _, p := range ns.Peers {
			if !p.VTEP.Is4() {
				return invalid("overlay network %q: peer %s has no IPv4 VTEP address", n.Name, p.IP)
			}
			if err := checkIP(n, ips, p.IP, "peer on "+p.VTEP.String()); err != nil {
				return err
			}
		}
		for _, v := range ns.VTEPs {
			if !v.Is4() {
				return invalid("overlay network %q: VTEP %s is not an IPv4 address", n.Name, v)
			}
		}
	}
	return nil
}

func checkIP(n Network, seen map[netip.Addr]string, ip netip.Addr, who string) error {
	if !n.Subnet.Contains(ip) || ip == n.Subnet.Addr() {
		return invalid("overlay network %q: %s has address %s outside subnet %s", n.Name, who, ip, n.Subnet)
	}
	if other, ok := seen[ip]; ok {
		return invalid("overlay network %q: %s has address %s, already used by %s; addresses must be unique", n.Name, who, ip, other)
	}
	seen[ip] = who
	return nil
}
