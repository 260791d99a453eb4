package wireguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/vxlan"
)

// blackholeMetric is the metric of the route that drops traffic to the tunnel prefix: above the
// interface's own route (metric 0), so it counts only when that one is gone.
const blackholeMetric = 4000

// Tunnel is this host's WireGuard interface and key pair. It is safe for concurrent use.
type Tunnel struct {
	cfg  Config
	log  *slog.Logger
	addr netip.Addr

	mu       sync.Mutex
	key      wgtypes.Key
	keyAt    time.Time
	dev      backend                  // nil until Converge made it, or after it died
	peers    map[wgtypes.Key]peerConf // as configured on dev
	noKernel bool                     // the kernel refused a link of type wireguard: use wireguard-go
	bad      map[string]bool          // peers left out for a bad key, logged once
}

var _ vxlan.Tunnel = (*Tunnel)(nil)

// peerConf is one peer as given to WireGuard.
type peerConf struct {
	key      wgtypes.Key
	endpoint netip.AddrPort
	addr     netip.Addr
}

// backend is a WireGuard implementation holding the interface: the kernel's or wireguard-go.
type backend interface {
	// configure sets the private key (when priv is not nil), removes the peers of remove and adds
	// or updates those of set.
	configure(priv *wgtypes.Key, remove []wgtypes.Key, set []peerConf) error
	// alive tells whether the interface still works (wireguard-go stops when its TUN goes away).
	alive() bool
	close()
	kind() string
}

// New loads (or makes) the host's key pair; the interface is made by the first Converge.
func New(cfg Config) (*Tunnel, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	k, at, err := loadKey(cfg.KeyPath)
	if err != nil {
		return nil, err
	}
	return &Tunnel{cfg: cfg, log: cfg.Logger.With("component", "wireguard"), addr: TunnelAddr(cfg.Prefix, cfg.LocalIP),
		key: k, keyAt: at, noKernel: cfg.Userspace, bad: map[string]bool{}}, nil
}

// Name is the interface's name.
func (t *Tunnel) Name() string { return t.cfg.Name }

// Addr is this host's tunnel address.
func (t *Tunnel) Addr() netip.Addr { return t.addr }

// PeerAddr is the tunnel address of the host with underlay address ip.
func (t *Tunnel) PeerAddr(ip netip.Addr) netip.Addr { return TunnelAddr(t.cfg.Prefix, ip) }

// Port is the UDP port of every host's WireGuard.
func (t *Tunnel) Port() int { return t.cfg.Port }

// PublicKey is the host's public key (base64), the one to publish.
func (t *Tunnel) PublicKey() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.key.PublicKey().String()
}

// KeyAge is how long ago the key pair was made.
func (t *Tunnel) KeyAge() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Since(t.keyAt)
}

// Rotate makes a new key pair, keeps it, and switches the interface to it at once; it returns the new
// public key, to publish. Peers reach the host again once they have the new key.
func (t *Tunnel) Rotate() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k, at, err := newKey(t.cfg.KeyPath)
	if err != nil {
		return "", err
	}
	t.key, t.keyAt = k, at
	if t.dev != nil {
		if err := t.dev.configure(&k, nil, nil); err != nil {
			t.dev.close()
			t.dev = nil // made again, with the new key, by the next Converge
			return k.PublicKey().String(), fmt.Errorf("switch %s to the new key: %w", t.cfg.Name, err)
		}
	}
	t.log.Info("WireGuard key pair rotated", "public_key", k.PublicKey().String())
	return k.PublicKey().String(), nil
}

// Close removes the interface (the kernel's) or stops wireguard-go (its TUN goes with it).
func (t *Tunnel) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dev != nil {
		_ = netlink.Do(t.cfg.Netns, func() error { t.dev.close(); return nil })
		t.dev = nil
	}
}

// Converge makes the interface exist with its address, MTU and fail-closed route, and exactly peers
// as its peers (vxlan.Tunnel).
func (t *Tunnel) Converge(ctx context.Context, peers []vxlan.TunnelPeer, mtu int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	// In Config.Netns: the TUN device, the netlink handle and wireguard-go's UDP sockets are made in
	// the namespace of the thread that makes them.
	return netlink.Do(t.cfg.Netns, func() error { return t.converge(peers, mtu) })
}

func (t *Tunnel) converge(peers []vxlan.TunnelPeer, mtu int) error {
	h, err := netlink.System{}.Handle("")
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := netlink.FindLink(h, t.cfg.Name)
	if err != nil {
		return err
	}
	if t.dev != nil && (!t.dev.alive() || link == nil) {
		t.log.Warn("WireGuard interface gone; making it again", "interface", t.cfg.Name)
		t.dev.close()
		t.dev = nil
	}
	if t.dev == nil {
		if err := t.open(h, link, mtu); err != nil {
			return err
		}
		if link, err = netlink.FindLink(h, t.cfg.Name); err != nil || link == nil {
			return fmt.Errorf("interface %s vanished right after it was made: %v", t.cfg.Name, err)
		}
	}
	if err := t.setLink(h, link, mtu); err != nil {
		return err
	}
	return t.setPeers(peers)
}

// open makes the interface: the kernel's WireGuard unless it has none, then wireguard-go.
func (t *Tunnel) open(h netlink.Handle, stale vnl.Link, mtu int) error {
	if stale != nil { // a previous agent's (kernel) interface, or one somebody else made: ov owns the name
		if err := h.LinkDel(stale); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete the stale interface %s: %w", t.cfg.Name, err)
		}
	}
	var dev backend
	var err error
	if !t.noKernel {
		if dev, err = openKernel(h, t.cfg); err != nil {
			t.noKernel = true
			t.log.Info("the kernel has no WireGuard (or refused it); using wireguard-go on a TUN device", "why", err)
		}
	}
	if dev == nil {
		if dev, err = openUserspace(t.cfg, mtu, t.log); err != nil {
			return fmt.Errorf("make the WireGuard interface %s with wireguard-go (it needs /dev/net/tun): %w", t.cfg.Name, err)
		}
	}
	key := t.key
	if err := dev.configure(&key, nil, nil); err != nil {
		dev.close()
		return fmt.Errorf("configure %s: %w", t.cfg.Name, err)
	}
	t.dev, t.peers = dev, map[wgtypes.Key]peerConf{}
	t.log.Info("WireGuard interface up", "interface", t.cfg.Name, "implementation", dev.kind(), "address", t.addr, "port", t.cfg.Port)
	return nil
}

// setLink gives the interface its address (with the whole prefix: the hosts' tunnel addresses are
// on it), MTU and up, and puts the blackhole route of the prefix in place.
func (t *Tunnel) setLink(h netlink.Handle, link vnl.Link, mtu int) error {
	if link.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, t.cfg.Name, err)
		}
	}
	addrs, err := h.AddrList(link, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("list the addresses of %s: %w", t.cfg.Name, err)
	}
	want := netip.PrefixFrom(t.addr, t.cfg.Prefix.Bits())
	if !slices.ContainsFunc(addrs, func(a vnl.Addr) bool {
		ones, _ := a.Mask.Size()
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		return ip == want.Addr() && ones == want.Bits()
	}) {
		a := &vnl.Addr{IPNet: &net.IPNet{IP: want.Addr().AsSlice(), Mask: net.CIDRMask(want.Bits(), 32)}}
		if err := h.AddrReplace(link, a); err != nil {
			return fmt.Errorf("add address %s to %s: %w", want, t.cfg.Name, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", t.cfg.Name, err)
		}
	}
	p := t.cfg.Prefix.Masked()
	bh := &vnl.Route{Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}, Type: unix.RTN_BLACKHOLE, Priority: blackholeMetric}
	if err := h.RouteReplace(bh); err != nil {
		return fmt.Errorf("add the blackhole route of %s (nothing for a tunnel address may leave in clear): %w", p, err)
	}
	return nil
}

// setPeers makes the interface's peers exactly peers (those with a valid key).
func (t *Tunnel) setPeers(peers []vxlan.TunnelPeer) error {
	want := map[wgtypes.Key]peerConf{}
	for _, p := range peers {
		k, err := wgtypes.ParseKey(p.PublicKey)
		if err != nil {
			if !t.bad[p.PublicKey] {
				t.bad[p.PublicKey] = true
				t.log.Warn("a host's WireGuard key does not parse; it is not a peer, its encrypted traffic is dropped", "host", p.Host, "err", err)
			}
			continue
		}
		want[k] = peerConf{key: k, endpoint: p.Endpoint, addr: p.Addr}
	}
	var remove []wgtypes.Key
	for k := range t.peers {
		if _, ok := want[k]; !ok {
			remove = append(remove, k)
		}
	}
	var set []peerConf
	for k, p := range want {
		if t.peers[k] != p {
			set = append(set, p)
		}
	}
	if len(remove) == 0 && len(set) == 0 {
		return nil
	}
	if err := t.dev.configure(nil, remove, set); err != nil {
		t.dev.close()
		t.dev = nil // made again from scratch by the next Converge
		return fmt.Errorf("configure the peers of %s: %w", t.cfg.Name, err)
	}
	t.peers = want
	t.log.Debug("WireGuard peers set", "peers", len(want), "added_or_changed", len(set), "removed", len(remove))
	return nil
}
