package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/dns"
	"github.com/ovnet/ov/internal/driver/overlay"
	"github.com/ovnet/ov/internal/membership"
	"github.com/ovnet/ov/internal/vxlan"
	"github.com/ovnet/ov/internal/wireguard"
)

// addOverlayFlags declares the flags that join this host to a cluster.
func addOverlayFlags(f *pflag.FlagSet) {
	f.String("controller", "", "the controller's URL (https://HOST:7480); empty: no cluster, no overlay networks")
	f.String("controller-ca", "", "CA certificate (PEM) that signed the controller's certificate (default: system roots)")
	f.String("join-token", "", "the cluster's join token, used once to register this host (env OV_JOIN_TOKEN)")
	f.String("join-token-file", "", "file holding the join token")
	f.String("underlay-address", "", "this host's underlay IPv4 address, for VXLAN and gossip (default: the address of the default route's interface)")
	f.Int("vxlan-port", 4789, "UDP port of VXLAN, the same on every host")
	f.Int("gossip-port", 7946, "TCP and UDP port of the gossip among agents (encrypted with the cluster's keyring from the controller), the same on every host")
	f.StringToString("labels", nil, "labels of this host, key=value,...")
	f.Duration("gossip-probe-interval", 500*time.Millisecond, "how often gossip probes a random host; with --gossip-suspicion-mult it bounds how soon a dead host is withdrawn (docs/scale.md, Gossip tuning)")
	f.Int("gossip-suspicion-mult", 3, "how many probe intervals (times log10 of the hosts) a suspect host has to refute before it is declared dead; 2 withdraws a dead host of a 1,000-host cluster in about 5 s")
	f.Bool("dataplane-probe", true, "keep the entries of a host whose agent is silent while its kernel answers ICMP echo on its underlay address (an agent restart or upgrade is no outage); turn off only where the underlay drops ICMP between hosts")
	f.Int("wireguard-port", 51820, "UDP port of the WireGuard tunnel of encrypted overlay networks, the same on every host")
	f.String("wireguard-prefix", "100.127.0.0/16", "prefix of the hosts' tunnel addresses (a host's: this prefix with the low bits of its underlay address), the same on every host; it must overlap no network")
	f.Duration("wireguard-key-max-age", 30*24*time.Hour, "rotate the host's WireGuard key pair once it is this old (0: only on ovctl node rotate-key)")
	f.Bool("wireguard-userspace", false, "use wireguard-go on a TUN device even where the kernel has WireGuard")
	f.Duration("overlay-resync", 10*time.Second, "period of the full overlay reconcile that repairs kernel state changed behind the agent's back")
}

// newOverlay builds the overlay driver when a controller is configured; nil, nil otherwise.
func newOverlay(v *viper.Viper, host, root string, names *dns.Table, log *slog.Logger, reg prometheus.Registerer) (*overlay.Driver, error) {
	url := v.GetString("controller")
	if url == "" {
		return nil, nil
	}
	join := v.GetString("join-token")
	if f := v.GetString("join-token-file"); join == "" && f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--join-token-file: %w", err)
		}
		join = strings.TrimSpace(string(b))
	}
	addr, err := underlayAddress(v.GetString("underlay-address"))
	if err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if ca := v.GetString("controller-ca"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--controller-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--controller-ca %s holds no PEM certificate", ca)
		}
		tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	base, err := client.New(client.Config{URL: url, TLS: tlsCfg})
	if err != nil {
		return nil, err
	}
	vcfg := vxlan.DefaultConfig()
	vcfg.Logger = log
	vcfg.LocalIP = addr
	vcfg.Port = v.GetInt("vxlan-port")
	vcfg.Resync = v.GetDuration("overlay-resync")
	metrics, err := overlay.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	vcfg.OnReconcile = metrics.ObserveReconcile
	tun, err := newTunnel(v, addr, root, log)
	if err != nil {
		return nil, err
	}
	vcfg.Tunnel = tun
	dp, err := vxlan.New(vcfg)
	if err != nil {
		return nil, err
	}
	mcfg, err := gossipConfig(v, host, addr)
	if err != nil {
		return nil, err
	}
	mcfg.Log = log
	if v.GetBool("dataplane-probe") {
		// Opened here, on the agent's own network namespace, before anything enters another one.
		if mcfg.Dataplane, err = membership.NewICMP(); err != nil {
			return nil, fmt.Errorf("%w; or run with --dataplane-probe=false", err)
		}
	}
	members, err := membership.New(mcfg)
	if err != nil {
		return nil, err
	}
	return overlay.New(overlay.Config{
		Host:       host,
		Address:    addr,
		Labels:     v.GetStringMapString("labels"),
		GossipPort: mcfg.Port,
		StatePath:  filepath.Join(root, "overlay", "state.json"),
		TokenPath:  filepath.Join(root, "overlay", "host-token"),
		Connect:    func(token string) overlay.Controller { return base.WithToken(token) },
		JoinToken:  join,
		Dataplane:  dp,
		Members:    members,
		Names:      names,
		Log:        log,
		Metrics:    metrics,
		Keys:       tun,
		KeyMaxAge:  v.GetDuration("wireguard-key-max-age"),
	})
}

// newTunnel makes the WireGuard tunnel of encrypted networks (its interface appears with the first
// encrypted network the host serves); the key pair is loaded or made now.
func newTunnel(v *viper.Viper, addr netip.Addr, root string, log *slog.Logger) (*wireguard.Tunnel, error) {
	wcfg := wireguard.DefaultConfig()
	wcfg.Logger, wcfg.LocalIP = log, addr
	wcfg.KeyPath = filepath.Join(root, "overlay", "wireguard.key")
	wcfg.Port = v.GetInt("wireguard-port")
	wcfg.Userspace = v.GetBool("wireguard-userspace")
	p, err := netip.ParsePrefix(v.GetString("wireguard-prefix"))
	if err != nil {
		return nil, fmt.Errorf("--wireguard-prefix %q is not a CIDR prefix such as 100.127.0.0/16", v.GetString("wireguard-prefix"))
	}
	wcfg.Prefix = p
	if err := os.MkdirAll(filepath.Dir(wcfg.KeyPath), 0o700); err != nil {
		return nil, err
	}
	return wireguard.New(wcfg)
}

// underlayAddress parses s, or finds the IPv4 address of the interface of the default route.
func underlayAddress(s string) (netip.Addr, error) {
	if s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("--underlay-address %q is not an IPv4 address", s)
		}
		return a, nil
	}
	// The source address the kernel would use towards a public address: no packet is sent.
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find this host's underlay address (no default route?): %w; set --underlay-address", err)
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return a, nil
}

// runOverlay runs the driver until ctx ends; errors are logged (the agent serves on without overlay).
func runOverlay(ctx context.Context, d *overlay.Driver, log *slog.Logger) {
	if d == nil {
		return
	}
	if err := d.Run(ctx); err != nil {
		log.Error("overlay driver stopped", "err", err)
	}
}

// gossipConfig is the membership configuration the flags ask for.
func gossipConfig(v *viper.Viper, host string, addr netip.Addr) (membership.Config, error) {
	mcfg := membership.DefaultConfig(host, addr)
	mcfg.Port = v.GetInt("gossip-port")
	mcfg.ProbeInterval = v.GetDuration("gossip-probe-interval")
	mcfg.SuspicionMult = v.GetInt("gossip-suspicion-mult")
	if mcfg.ProbeInterval < 100*time.Millisecond || mcfg.SuspicionMult < 1 {
		return mcfg, fmt.Errorf("--gossip-probe-interval %v and --gossip-suspicion-mult %d: want an interval of at least 100ms and a multiplier of at least 1 (defaults 500ms and 3)",
			mcfg.ProbeInterval, mcfg.SuspicionMult)
	}
	if mcfg.ProbeTimeout > mcfg.ProbeInterval/2 {
		mcfg.ProbeTimeout = mcfg.ProbeInterval / 2 // a probe's ack must be awaited within its interval
	}
	return mcfg, nil
}
