package wireguard

import (
	"fmt"
	"net"
	"time"

	vnl "github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/ovnet/ov/internal/netlink"
)

// kernel is the kernel's WireGuard: a link of type wireguard, configured over generic netlink
// (wgctrl). It is used when the kernel can make such a link. This machine's kernel has no WireGuard,
// so this path is compiled and kept small but not exercised by the tests here (docs/encryption.md).
type kernel struct {
	name      string
	port      int
	keepalive time.Duration
	c         *wgctrl.Client
}

func openKernel(h netlink.Handle, cfg Config) (backend, error) {
	if err := h.LinkAdd(&vnl.Wireguard{LinkAttrs: vnl.LinkAttrs{Name: cfg.Name}}); err != nil {
		return nil, fmt.Errorf("create a link of type wireguard: %w", err)
	}
	c, err := wgctrl.New()
	if err != nil {
		if l, ferr := netlink.FindLink(h, cfg.Name); ferr == nil && l != nil {
			_ = h.LinkDel(l)
		}
		return nil, fmt.Errorf("open the kernel's WireGuard configuration interface: %w", err)
	}
	return &kernel{name: cfg.Name, port: cfg.Port, keepalive: time.Duration(cfg.Keepalive) * time.Second, c: c}, nil
}

func (k *kernel) configure(priv *wgtypes.Key, remove []wgtypes.Key, set []peerConf) error {
	cfg := wgtypes.Config{PrivateKey: priv, ListenPort: &k.port}
	for _, r := range remove {
		cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: r, Remove: true})
	}
	for _, p := range set {
		ka := k.keepalive
		cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{
			PublicKey: p.key, Endpoint: net.UDPAddrFromAddrPort(p.endpoint), ReplaceAllowedIPs: true,
			AllowedIPs: []net.IPNet{{IP: p.addr.AsSlice(), Mask: net.CIDRMask(32, 32)}}, PersistentKeepaliveInterval: &ka,
		})
	}
	return k.c.ConfigureDevice(k.name, cfg)
}

func (k *kernel) alive() bool {
	_, err := k.c.Device(k.name)
	return err == nil
}

func (k *kernel) close() {
	if h, err := (netlink.System{}).Handle(""); err == nil {
		if l, err := netlink.FindLink(h, k.name); err == nil && l != nil {
			_ = h.LinkDel(l)
		}
		h.Close()
	}
	_ = k.c.Close()
}

func (k *kernel) kind() string { return "kernel" }
