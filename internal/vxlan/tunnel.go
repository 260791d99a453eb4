package vxlan

import (
	"context"
	"net/netip"
)

// Tunnel carries the encrypted networks (Network.Encrypted) between hosts: one interface per host
// (internal/wireguard: WireGuard, the kernel's or userspace over TUN) with an address of this host
// from a prefix reserved for tunnel endpoints. The VXLAN device of an encrypted network uses the
// tunnel addresses as its local and remote VTEPs, so its packets leave the host only through the
// tunnel interface (docs/encryption.md).
//
// The fail-closed part is not the Tunnel's alone: the Driver's filter drops VXLAN of an encrypted VNI
// that would leave, or has arrived, by any other interface, whatever the Tunnel does.
type Tunnel interface {
	// Name is the tunnel interface, e.g. ovwg0.
	Name() string
	// Addr is this host's tunnel address: the VXLAN source address of the encrypted networks.
	Addr() netip.Addr
	// Converge makes the tunnel exist (recreating it when it went away), with Addr, MTU mtu, the
	// route that drops traffic to tunnel addresses of hosts it has no peer for, and exactly peers as
	// its peers. It may be called repeatedly with the same peers.
	Converge(ctx context.Context, peers []TunnelPeer, mtu int) error
}

// TunnelPeer is another host the tunnel carries encrypted networks to.
type TunnelPeer struct {
	Host      string         // its name, for messages
	PublicKey string         // its WireGuard public key (base64)
	Endpoint  netip.AddrPort // its underlay address and tunnel port
	Addr      netip.Addr     // its tunnel address
}

// TunnelOverhead is what WireGuard adds to a packet (IPv6 outer header 40, UDP 8, WireGuard 32):
// an encrypted network's MTU is the underlay MTU minus this minus the 50 bytes of VXLAN.
const TunnelOverhead = 80

// tunnelAddr is this host's tunnel address ("" when it has no tunnel).
func (d *Driver) tunnelAddr() netip.Addr {
	if d.cfg.Tunnel == nil {
		return netip.Addr{}
	}
	return d.cfg.Tunnel.Addr()
}

// tunnelName is the tunnel interface ("" when there is none).
func (d *Driver) tunnelName() string {
	if d.cfg.Tunnel == nil {
		return ""
	}
	return d.cfg.Tunnel.Name()
}

// localVTEP is the VXLAN source address of network n on this host.
func (d *Driver) localVTEP(n Network) netip.Addr {
	if n.Encrypted {
		return d.tunnelAddr()
	}
	return d.cfg.LocalIP
}
