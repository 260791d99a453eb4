package wireguard

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"

	"github.com/ovnet/ov/internal/errdefs"
)

// Config configures a Tunnel. Start from DefaultConfig and set LocalIP and KeyPath.
type Config struct {
	// Logger receives the tunnel's logs, scoped with component=wireguard. Default: discard.
	Logger *slog.Logger
	// Name is the WireGuard interface. Default "ovwg0".
	Name string
	// Port is the UDP port WireGuard listens on, the same on every host (peers are configured with
	// it). Default 51820.
	Port int
	// Prefix holds the tunnel addresses: a host's is the prefix with the low bits of its underlay
	// address (with /16, its last two bytes). It must not overlap any network of the hosts. Default
	// 100.127.0.0/16 (the end of the shared address space of RFC 6598).
	Prefix netip.Prefix
	// LocalIP is this host's underlay address. Required.
	LocalIP netip.Addr
	// KeyPath is the file of the host's private key (created 0600 when missing). Required.
	KeyPath string
	// Netns is the network namespace the interface and wireguard-go's sockets are made in ("" = the
	// process's own, as the agent runs). Default "".
	Netns string
	// Userspace forces wireguard-go on a TUN device even where the kernel has WireGuard. Default
	// false: the kernel's when it can create a link of type wireguard.
	Userspace bool
	// NoOffloads makes wireguard-go's TUN device without IFF_VNET_HDR: no TSO from the kernel, no
	// GRO towards it, one packet per read and write (for measurements). Default false.
	NoOffloads bool
	// Keepalive is the persistent keepalive of every peer, in seconds: a new peer is sent a handshake
	// at once (the tunnel is ready before the first packet) and idle sessions stay fresh. Default 25.
	Keepalive int
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Name:      "ovwg0",
		Port:      51820,
		Prefix:    netip.MustParsePrefix("100.127.0.0/16"),
		Keepalive: 25,
	}
}

// Validate reports the first bad field.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("wireguard config: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	switch {
	case !c.LocalIP.Is4():
		return bad("LocalIP %q is not an IPv4 address; set it to this host's underlay address", c.LocalIP)
	case c.KeyPath == "":
		return bad("KeyPath is empty; give a file in the agent's state directory")
	case c.Name == "" || len(c.Name) > 15:
		return bad("interface name %q must have 1-15 characters", c.Name)
	case c.Port < 1 || c.Port > 65535:
		return bad("port %d is out of range; use 1-65535 (51820 is WireGuard's)", c.Port)
	case !c.Prefix.IsValid() || !c.Prefix.Addr().Is4() || c.Prefix.Bits() < 8 || c.Prefix.Bits() > 24:
		return bad("tunnel prefix %s must be an IPv4 prefix of /8 to /24", c.Prefix)
	case c.Logger == nil:
		return bad("Logger is nil; start from DefaultConfig()")
	}
	return nil
}

// TunnelAddr is the tunnel address of the host with underlay address ip: prefix's network bits, ip's
// host bits. Two hosts whose underlay addresses share their low bits share a tunnel address: choose a
// prefix long enough for the underlay's subnet.
func TunnelAddr(prefix netip.Prefix, ip netip.Addr) netip.Addr {
	p, a := prefix.Masked().Addr().As4(), ip.As4()
	hostBits := uint32(1)<<(32-prefix.Bits()) - 1
	v := be(p) | be(a)&hostBits
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func be(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
