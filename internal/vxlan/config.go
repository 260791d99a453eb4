package vxlan

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
)

// Config configures a Driver. Start from DefaultConfig and set LocalIP.
type Config struct {
	// Logger receives the driver's logs, scoped with component=vxlan. Default: discard.
	Logger *slog.Logger
	// HostNetns is the path of the network namespace the driver manages as "the host" (e.g.
	// /run/netns/host1 in the lab); "" means the namespace the process runs in. Default "".
	HostNetns string
	// LocalIP is this host's underlay (VTEP) address: the VXLAN source address. Required; it must be
	// an IPv4 address of an interface in HostNetns.
	LocalIP netip.Addr
	// Port is the UDP destination port of VXLAN. Default 4789 (IANA).
	Port int
	// UnderlayMTU is the MTU to derive overlay MTUs from (minus 50). Default 0: read the MTU of the
	// interface holding LocalIP at every reconcile.
	UnderlayMTU int
	// Resync is the period of the full reconcile Run does even when nothing was kicked. Default 30s.
	Resync time.Duration
	// MinBackoff and MaxBackoff bound the retry delay Run uses after a failed reconcile (doubling).
	// Defaults 200ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// IsolateFrom lists iptables interface patterns that overlay traffic is never forwarded to, besides
	// the other overlay networks' gateways (ovgw+), which are always isolated. Default: ov's local bridge networks ("ov0",
	// "ov-+", see docs/networking.md) and Docker's default bridge ("docker0").
	IsolateFrom []string
	// Watch makes Run subscribe to the kernel's link and neighbour notifications in HostNetns and
	// reconcile as soon as one of ov's devices or entries changes (e.g. deleted by hand), rather than
	// at the next Resync. Needs a Netlink that implements netlink.Watcher. Default true.
	Watch bool
	// NoTrack exempts VXLAN packets (UDP Port) from connection tracking, with a NOTRACK rule in the
	// raw table (chain OV-OVERLAY-RAW): fewer per-packet costs on the tunnel. (Traffic within an
	// overlay network never reaches the host's netfilter: the containers' macvlans switch it.)
	// Default true.
	NoTrack bool
	// IPForward turns on net.ipv4.ip_forward in HostNetns when a non-internal network is set up, so
	// that containers reach the outside through the gateway. Default true.
	IPForward bool
	// RouteLocalnet sets net.ipv4.conf.ovgw-<vni>.route_localnet to 1 while a container of the network
	// publishes a port that 127.0.0.1 reaches (on every host address, or on a loopback address), and to
	// 0 otherwise, so that the host's own clients reach published ports at localhost as on bridge
	// networks (the bridge driver's loopback guard keeps 127.0.0.0/8 from arriving on any other
	// interface). Default true.
	RouteLocalnet bool
	// Netlink opens netlink handles in namespaces. Default netlink.System{} (the kernel).
	Netlink netlink.Namespaces
	// IPTables reads and writes the tables of HostNetns. Default nil: iptables-save and
	// iptables-restore started from an OS thread switched into HostNetns (NewIPTables).
	IPTables iptables.Client
	// Tunnel carries the encrypted networks (internal/wireguard). Nil: encrypted networks are left out
	// on this host, never set up in clear. Default nil.
	Tunnel Tunnel
	// OnReconcile, if set, is called after every reconcile with what it did (metrics: see
	// internal/driver/overlay/metrics.go). It runs on the reconcile's goroutine and must not block.
	OnReconcile func(Reconciled)
}

// DefaultConfig returns a Config with every default filled in; LocalIP remains to be set.
func DefaultConfig() Config {
	return Config{
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Port:          4789,
		Resync:        30 * time.Second,
		MinBackoff:    200 * time.Millisecond,
		MaxBackoff:    30 * time.Second,
		IsolateFrom:   []string{"ov0", "ov-+", "docker0"},
		IPForward:     true,
		RouteLocalnet: true,
		Watch:         true,
		NoTrack:       true,
		Netlink:       netlink.System{},
	}
}

// Validate reports the first bad field.
func (c *Config) Validate() error {
	if !c.LocalIP.Is4() {
		return fmt.Errorf("vxlan config: LocalIP %q is not an IPv4 address; set it to this host's underlay address: %w", c.LocalIP, errdefs.ErrInvalidArgument)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("vxlan config: Port %d is out of range; use 1-65535 (4789 is the standard): %w", c.Port, errdefs.ErrInvalidArgument)
	}
	if c.UnderlayMTU != 0 && (c.UnderlayMTU < 626 || c.UnderlayMTU > 65535) {
		return fmt.Errorf("vxlan config: UnderlayMTU %d is out of range; use 626-65535 or 0 to read it from the interface: %w", c.UnderlayMTU, errdefs.ErrInvalidArgument)
	}
	if c.Resync <= 0 || c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("vxlan config: Resync (%v), MinBackoff (%v) and MaxBackoff (%v) must be positive and MaxBackoff >= MinBackoff: %w", c.Resync, c.MinBackoff, c.MaxBackoff, errdefs.ErrInvalidArgument)
	}
	if c.Logger == nil || c.Netlink == nil {
		return fmt.Errorf("vxlan config: Logger and Netlink must be set; start from DefaultConfig(): %w", errdefs.ErrInvalidArgument)
	}
	return nil
}
