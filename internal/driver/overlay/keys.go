package overlay

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/vxlan"
)

// Keys is this host's WireGuard identity, for its encrypted networks (*wireguard.Tunnel satisfies
// it). The private key stays behind it; the driver publishes the public key with the host record.
type Keys interface {
	PublicKey() string
	// Rotate makes a new key pair and switches to it; the caller publishes the new public key.
	Rotate() (string, error)
	KeyAge() time.Duration
	// PeerAddr is the tunnel address of the host with this underlay address.
	PeerAddr(underlay netip.Addr) netip.Addr
	// Port is the UDP port of every host's WireGuard.
	Port() int
}

// nudger is implemented by gossip that can tell the other members to read the host list now
// (*membership.Membership): a rotated key reaches the peers in milliseconds, not at their next
// heartbeat.
type nudger interface{ Nudge() }

// publicKey is the key to register with ("" without encryption).
func (d *Driver) publicKey() string {
	if d.cfg.Keys == nil {
		return ""
	}
	return d.cfg.Keys.PublicKey()
}

// checkKey runs after each heartbeat: it rotates the key pair when an admin asked (ovctl node
// rotate-key) or it is older than Config.KeyMaxAge, and publishes the public key again whenever the
// controller's record does not hold it (revoked, rotated, or a registration that raced). Then it
// nudges the other hosts to read the host list.
func (d *Driver) checkKey(ctx context.Context, ctl Controller, h api.Host) {
	k := d.cfg.Keys
	if k == nil {
		return
	}
	// A request is answered once: when the published key is still the one in use (or was revoked);
	// after a rotation whose publication failed, only the publication is retried.
	asked := h.RotateKey && (h.WireGuardKey == k.PublicKey() || h.WireGuardKey == "")
	rotate := asked || (d.cfg.KeyMaxAge > 0 && k.KeyAge() > d.cfg.KeyMaxAge)
	if !rotate && h.WireGuardKey == k.PublicKey() {
		return
	}
	if rotate {
		// Switch first, publish next: a peer that sees the new key at once handshakes with a host
		// that already has it.
		if _, err := k.Rotate(); err != nil {
			d.log.Error("cannot rotate the WireGuard key; publishing the key in use", "err", err)
		}
	}
	me := api.Host{Name: d.cfg.Host, Address: d.cfg.Address.String(), Labels: d.cfg.Labels, WireGuardKey: k.PublicKey()}
	if _, err := ctl.RegisterHost(ctx, me); err != nil {
		d.log.Warn("cannot publish the WireGuard public key; retrying with the next heartbeat", "err", err)
		return
	}
	d.log.Info("WireGuard public key published", "rotated", rotate, "key", api.KeyFingerprint(me.WireGuardKey))
	if n, ok := d.cfg.Members.(nudger); ok {
		n.Nudge()
	}
}

// encrypted fills in the tunnel side of an encrypted network's desired state: its peers' and VTEPs'
// addresses become tunnel addresses, and the hosts serving it join the tunnel's peers.
func (d *Driver) encrypted(st *vxlan.NetworkState, hosts map[string]vxlan.TunnelPeer, peerHost []string) {
	k := d.cfg.Keys
	if k == nil { // the data plane leaves the network out (no tunnel), never in clear
		return
	}
	for i := range st.Peers {
		st.Peers[i].VTEP = k.PeerAddr(st.Peers[i].VTEP)
		name := peerHost[i]
		if _, done := hosts[name]; done {
			continue
		}
		h := d.st.Hosts[name]
		under, err := netip.ParseAddr(h.Address)
		if err != nil || h.WireGuardKey == "" {
			continue // no key: no peer, and WireGuard drops what is sent to its tunnel address
		}
		hosts[name] = vxlan.TunnelPeer{Host: name, PublicKey: h.WireGuardKey, Endpoint: netip.AddrPortFrom(under, uint16(k.Port())), Addr: k.PeerAddr(under)}
	}
}

// tunnelPeers lists the tunnel's peers, sorted by host.
func tunnelPeers(hosts map[string]vxlan.TunnelPeer) []vxlan.TunnelPeer {
	out := make([]vxlan.TunnelPeer, 0, len(hosts))
	for _, p := range hosts {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b vxlan.TunnelPeer) int { return strings.Compare(a.Host, b.Host) })
	return out
}
