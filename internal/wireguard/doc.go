// Package wireguard is the tunnel of ov's encrypted overlay networks: one WireGuard interface per host
// (ovwg0 by default), with this host's tunnel address, its own key pair and, as peers, exactly the
// hosts that serve one of the host's encrypted networks. It satisfies vxlan.Tunnel: the VXLAN devices
// of encrypted networks use tunnel addresses as VTEPs, so their packets travel inside WireGuard.
//
// Two implementations of the interface: the kernel's WireGuard (a link of type wireguard, configured
// through wgctrl) where the kernel has it, and wireguard-go (golang.zx2c4.com/wireguard) on a TUN
// device, inside the agent's process, where it does not. New tries the kernel first.
//
// Invariants:
//   - the private key never leaves the host: it is made here, kept 0600 in Config.KeyPath, given to
//     the kernel or to wireguard-go, and never logged or sent; only its public key is published;
//   - a route drops traffic to any address of the tunnel prefix that has no better route (blackhole,
//     high metric): with the interface gone, packets for tunnel addresses go nowhere rather than out
//     of the default route in clear (vxlan's filter drops them as well);
//   - a peer without a key is no peer: WireGuard drops packets to its tunnel address.
package wireguard
