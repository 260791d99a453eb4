package api

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/netip"
	"time"

	"github.com/ovnet/ov/internal/errdefs"
)

// Network drivers.
const (
	DriverOverlay = "overlay"
	DriverBridge  = "bridge"
	DriverHost    = "host"
	DriverNone    = "none"
)

// Network is a named network. Overlay networks are cluster-wide and owned by the controller; bridge
// networks are local to one agent. Empty fields in a create request are chosen by the owner (subnet from
// the default pool, gateway = first address, VNI from the VNI pool, MTU derived from the underlay).
type Network struct {
	Name     string `json:"name" yaml:"name"`
	Driver   string `json:"driver" yaml:"driver"`
	Subnet   string `json:"subnet,omitempty" yaml:"subnet,omitempty"`     // CIDR, e.g. 10.20.0.0/24
	Gateway  string `json:"gateway,omitempty" yaml:"gateway,omitempty"`   // address inside Subnet
	IPRange  string `json:"ipRange,omitempty" yaml:"ipRange,omitempty"`   // CIDR inside Subnet that containers get addresses from
	VNI      uint32 `json:"vni,omitempty" yaml:"vni,omitempty"`           // overlay only; 1..16777215
	MTU      int    `json:"mtu,omitempty" yaml:"mtu,omitempty"`           // 0: derived (underlay MTU - 50)
	Internal bool   `json:"internal,omitempty" yaml:"internal,omitempty"` // no outbound NAT
	// Encrypted (overlay only, fixed once the network exists): every packet of the network between
	// two hosts goes through WireGuard between them, never in clear (docs/encryption.md).
	Encrypted bool              `json:"encrypted,omitempty" yaml:"encrypted,omitempty"`
	Labels    map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`

	ID       string    `json:"id,omitempty" yaml:"-"`       // set by the owner
	Created  time.Time `json:"created,omitempty" yaml:"-"`  // set by the owner
	Revision int64     `json:"revision,omitempty" yaml:"-"` // etcd mod revision, for compare-and-swap

	// Dataplane is how the answering agent's host carries an overlay network; set only in an agent's
	// answer to GET /networks/{name} (ovctl network inspect), never stored, ignored in requests.
	Dataplane *NetworkDataplane `json:"dataplane,omitempty" yaml:"-"`

	// ctl-mounts: Containers are the answering agent's containers on the network, by container ID
	// (docker's network inspect "Containers"); set only in an agent's answer to GET /networks/{name}.
	Containers map[string]NetworkContainer `json:"containers,omitempty" yaml:"-"`
}

// NetworkContainer is one container's endpoint on a network, as docker's network inspect shows it.
type NetworkContainer struct {
	Name        string `json:"name"`
	EndpointID  string `json:"endpointID"`            // stable: derived from the container and network
	MacAddress  string `json:"macAddress,omitempty"`  // e.g. 02:42:0a:14:00:02
	IPv4Address string `json:"ipv4Address,omitempty"` // address/prefix, e.g. 10.20.0.2/24
	IPv6Address string `json:"ipv6Address,omitempty"`
}

// NetworkDataplane is one host's data plane for an overlay network: what it programmed, and the
// entries it left out and why. A bad entry (two endpoints claiming one address, an address outside the
// subnet, an invalid VTEP) costs that entry only: the rest of the network is programmed.
type NetworkDataplane struct {
	Host   string `json:"host"`   // the agent's host
	Active bool   `json:"active"` // set up on this host: it has containers on the network
	// Programmed entries: local containers, remote endpoints (ARP and FDB entries), other hosts
	// (flood entries and the VXLAN ingress filter).
	Endpoints int `json:"endpoints"`
	Peers     int `json:"peers"`
	VTEPs     int `json:"vteps"`
	// Problems are the entries left out now, sorted by kind and entry.
	Problems []DataplaneProblem `json:"problems,omitempty"`
	// ProblemsDetected counts the problems of this network that appeared on this host since the agent
	// started (a problem that goes and comes back counts again).
	ProblemsDetected uint64 `json:"problemsDetected"`
	// Error is the last failure to program the network on this host (kernel, iptables); "" when none.
	Error string `json:"error,omitempty"`
}

// Kinds of DataplaneProblem.Kind.
const (
	DataplaneNetwork  = "network"   // the whole network is not set up on this host
	DataplaneEndpoint = "container" // a container of this host gets no interface on the network
	DataplanePeer     = "peer"      // an endpoint on another host is not reachable from this host
	DataplaneVTEP     = "vtep"      // another host gets no flood entry and its VXLAN is not taken in
)

// DataplaneProblem is an entry a host's data plane left out of an overlay network.
type DataplaneProblem struct {
	Kind   string    `json:"kind"`   // one of the Dataplane* kinds
	Entry  string    `json:"entry"`  // which: "VNI 100", "<container ID> at 10.1.0.2", "10.1.0.3 on 192.168.1.12", a VTEP
	Reason string    `json:"reason"` // what is wrong and what to do
	Since  time.Time `json:"since"`  // left out since
}

// ValidName reports whether s may name a network, host or container.
func ValidName(s string) bool {
	// A loop, not a regexp: compiling `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$` cost every ov process
	// (ovctl, ovshim) a quarter of a millisecond at start.
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// Validate checks a network create request. It does not check overlap with other networks; the owner does.
func (n *Network) Validate() error {
	if !ValidName(n.Name) {
		return fmt.Errorf("network name %q: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit: %w", n.Name, errdefs.ErrInvalidArgument)
	}
	switch n.Driver {
	case DriverOverlay, DriverBridge:
	case "":
		return fmt.Errorf("network %q: no driver; use --driver overlay or --driver bridge: %w", n.Name, errdefs.ErrInvalidArgument)
	default:
		return fmt.Errorf("network %q: unknown driver %q; use overlay or bridge: %w", n.Name, n.Driver, errdefs.ErrInvalidArgument)
	}
	if n.Encrypted && n.Driver != DriverOverlay {
		return fmt.Errorf("network %q: --encrypted is for overlay networks (traffic of a %s network stays on its host); drop --encrypted or use --driver overlay: %w", n.Name, n.Driver, errdefs.ErrInvalidArgument)
	}
	var subnet netip.Prefix
	if n.Subnet != "" {
		p, err := netip.ParsePrefix(n.Subnet)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("network %q: subnet %q is not an IPv4 CIDR such as 10.20.0.0/24: %w", n.Name, n.Subnet, errdefs.ErrInvalidArgument)
		}
		if p.Masked() != p {
			return fmt.Errorf("network %q: subnet %q has host bits set; did you mean %s?: %w", n.Name, n.Subnet, p.Masked(), errdefs.ErrInvalidArgument)
		}
		if p.Bits() > 30 {
			return fmt.Errorf("network %q: subnet %q is too small; use a prefix of /30 or shorter: %w", n.Name, n.Subnet, errdefs.ErrInvalidArgument)
		}
		subnet = p
	}
	if n.Gateway != "" {
		a, err := netip.ParseAddr(n.Gateway)
		if err != nil || !a.Is4() {
			return fmt.Errorf("network %q: gateway %q is not an IPv4 address: %w", n.Name, n.Gateway, errdefs.ErrInvalidArgument)
		}
		if !subnet.IsValid() {
			return fmt.Errorf("network %q: --gateway needs --subnet: %w", n.Name, errdefs.ErrInvalidArgument)
		}
		if !subnet.Contains(a) || a == subnet.Addr() || a == LastAddr(subnet) {
			return fmt.Errorf("network %q: gateway %s is not a usable address of subnet %s: %w", n.Name, a, subnet, errdefs.ErrInvalidArgument)
		}
	}
	if n.IPRange != "" {
		r, err := netip.ParsePrefix(n.IPRange)
		if err != nil || !r.Addr().Is4() {
			return fmt.Errorf("network %q: ip-range %q is not an IPv4 CIDR: %w", n.Name, n.IPRange, errdefs.ErrInvalidArgument)
		}
		if !subnet.IsValid() {
			return fmt.Errorf("network %q: --ip-range needs --subnet: %w", n.Name, errdefs.ErrInvalidArgument)
		}
		if r.Masked() != r || r.Bits() < subnet.Bits() || !subnet.Contains(r.Addr()) {
			return fmt.Errorf("network %q: ip-range %s is not inside subnet %s: %w", n.Name, n.IPRange, subnet, errdefs.ErrInvalidArgument)
		}
	}
	if n.VNI > 1<<24-1 {
		return fmt.Errorf("network %q: VNI %d is out of range; use 1-16777215: %w", n.Name, n.VNI, errdefs.ErrInvalidArgument)
	}
	if n.VNI != 0 && n.Driver != DriverOverlay {
		return fmt.Errorf("network %q: a VNI applies only to overlay networks: %w", n.Name, errdefs.ErrInvalidArgument)
	}
	if n.MTU != 0 && (n.MTU < 576 || n.MTU > 65535) {
		return fmt.Errorf("network %q: MTU %d is out of range; use 576-65535 or leave it unset to derive it: %w", n.Name, n.MTU, errdefs.ErrInvalidArgument)
	}
	return nil
}

// LastAddr returns the highest address of p (the broadcast address for IPv4).
func LastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= uint32(1)<<hostBits - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Endpoint is one container's attachment to a network: the address the controller (overlay) or the
// agent (bridge) allocated for it. Its owner is the triple (Network, Host, Container).
type Endpoint struct {
	Network   string    `json:"network"`
	Host      string    `json:"host"`
	Container string    `json:"container"`          // container ID
	IP        string    `json:"ip"`                 // address without prefix length
	MAC       string    `json:"mac,omitempty"`      // derived from IP by the agent for overlay endpoints
	VTEP      string    `json:"vtep,omitempty"`     // underlay address of Host, filled in by the controller
	Created   time.Time `json:"created,omitempty"`  // set by the owner
	Revision  int64     `json:"revision,omitempty"` // etcd mod revision

	// Names are the container's DNS names on Network (its name, its hostname, its aliases there),
	// which every host's resolver answers; empty while the container is stopped. At most
	// MaxEndpointNames, each a ValidDNSName.
	Names []string `json:"names,omitempty"`
}

// Host states as seen by the controller.
const (
	HostAlive = "alive"
	HostDead  = "dead"
	HostLeft  = "left"
)

// Host is a node of the cluster, registered by its agent.
type Host struct {
	Name     string            `json:"name" yaml:"name"`
	Address  string            `json:"address" yaml:"address"` // underlay (VTEP) IPv4 address
	Labels   map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	State    string            `json:"state,omitempty" yaml:"-"`
	LastSeen time.Time         `json:"lastSeen,omitempty" yaml:"-"`
	Revision int64             `json:"revision,omitempty" yaml:"-"`
	// Token is the host's own credential, set only in the controller's answer to a first registration
	// (see docs/api.md): the agent keeps it and authenticates with it from then on.
	Token string `json:"token,omitempty" yaml:"-"`
	// GossipKeyringVersion is the version of the cluster's gossip keyring (GossipKeyring.Version), set
	// in the answer to a heartbeat: an agent refetches the keyring when it changes.
	GossipKeyringVersion int64 `json:"gossipKeyringVersion,omitempty" yaml:"-"`
	// HostsRevision is the revision of the last change to any host record (a new host, an address,
	// a WireGuard key), set in the answer to a heartbeat: an agent reads the host list again when it
	// moves, so that a peer's new key reaches it within a heartbeat.
	HostsRevision int64 `json:"hostsRevision,omitempty" yaml:"-"`
	// Dataplane is DataplaneReachable or DataplaneUnreachable, as the other hosts' probes of its kernel
	// find it (see DataplaneReport), with the hosts that report it unreachable: it tells a host whose
	// agent is only stopped (State dead, containers still forwarding) from a host that is gone.
	Dataplane       string   `json:"dataplane,omitempty" yaml:"-"`
	UnreachableFrom []string `json:"unreachableFrom,omitempty" yaml:"-"`
	// WireGuardKey is the host's WireGuard public key (base64 of 32 bytes, as wg(8) prints it),
	// published by its agent; the other hosts serving one of its encrypted networks configure it as
	// their peer (docs/encryption.md). Empty: the host has no tunnel, and encrypted traffic to it is
	// dropped. The private key never leaves the host.
	WireGuardKey string `json:"wireguardKey,omitempty" yaml:"-"`
	// RotateKey is set by ovctl node rotate-key: the agent makes a new key pair and publishes it,
	// which clears the request.
	RotateKey bool `json:"rotateKey,omitempty" yaml:"-"`
}

// ValidWireGuardKey says why s is not a WireGuard public key ("" when it is): base64 (standard, padded)
// of 32 bytes, as wg(8) prints it.
func ValidWireGuardKey(s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not base64", s)
	case len(b) != 32:
		return fmt.Sprintf("%q is %d bytes, not 32", s, len(b))
	case bytes.Equal(b, make([]byte, 32)):
		return "the all-zero key is no key"
	}
	return ""
}

// KeyFingerprint is a short, stable name of a WireGuard public key for listings (the first 8
// characters of its base64 form, as wg(8) users know them); "-" for none.
func KeyFingerprint(key string) string {
	if key == "" {
		return "-"
	}
	if len(key) > 8 {
		return key[:8] + "…"
	}
	return key
}

// Validate checks a host registration.
func (h *Host) Validate() error {
	if !ValidName(h.Name) {
		return fmt.Errorf("host name %q: use 1-63 letters, digits, '_', '.' or '-': %w", h.Name, errdefs.ErrInvalidArgument)
	}
	a, err := netip.ParseAddr(h.Address)
	if err != nil || !a.Is4() {
		return fmt.Errorf("host %q: address %q is not an IPv4 address: %w", h.Name, h.Address, errdefs.ErrInvalidArgument)
	}
	if why := notUnicast(a); why != "" {
		return fmt.Errorf("host %q: address %s is %s, not a unicast address other hosts can send VXLAN to; give the host's own underlay address: %w", h.Name, a, why, errdefs.ErrInvalidArgument)
	}
	if h.WireGuardKey != "" {
		if why := ValidWireGuardKey(h.WireGuardKey); why != "" {
			return fmt.Errorf("host %q: WireGuard public key %s; the agent publishes the base64 of its 32-byte public key: %w", h.Name, why, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// notUnicast says why a is not a host's own unicast IPv4 address ("" when it is). Loopback is refused
// too: a VTEP on 127.0.0.0/8 would make every peer send the host's traffic to itself (the lab and
// the tests give their hosts real addresses in network namespaces).
func notUnicast(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "unspecified (0.0.0.0)"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	case a.IsMulticast():
		return "a multicast address"
	case a.IsLoopback():
		return "a loopback address"
	case a.As4()[0] == 0:
		return "in 0.0.0.0/8 (this network)"
	case a.As4()[0] >= 240:
		return "in the reserved range 240.0.0.0/4"
	}
	return ""
}

// Error is the body of every non-2xx API answer (agent and controller alike).
type Error struct {
	Code    string `json:"code"`    // errdefs.Code of the error class
	Message string `json:"message"` // what was asked, what is wrong, what to do
}
