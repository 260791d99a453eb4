package bridge

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ipam"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
)

// Allocator hands out container addresses of bridge networks; *ipam.Local satisfies it. Allocate returns
// the address owner already holds when asked again; Release of what is not held is not an error.
type Allocator interface {
	Allocate(network string, r ipam.Range, owner string, want netip.Addr) (netip.Addr, error)
	Release(network, owner string) error
	Owners(network string) map[string]netip.Addr
	DropNetwork(network string) error
}

var _ Allocator = (*ipam.Local)(nil)

// AddressPool is a block that subnets of networks created without --subnet are carved from.
type AddressPool struct {
	Base netip.Prefix // e.g. 172.17.0.0/16
	Size int          // prefix length of each subnet, e.g. 16
}

// Config configures a Driver. Start from DefaultConfig.
type Config struct {
	// StateDir holds the driver's state file (bridge.json) and, when IPAM is nil, the address file
	// (ipam.json).
	StateDir string
	// NetnsDir is where container network namespaces are bind-mounted, one file per container ID.
	NetnsDir string
	// DefaultBridge is the device of the default network "bridge"; empty means no default network.
	DefaultBridge string
	// DefaultSubnet is the subnet of the default network; empty picks the first subnet of AddressPools
	// that overlaps no route of the host.
	DefaultSubnet string
	// AddressPools are tried in order for networks created without --subnet.
	AddressPools []AddressPool
	// IsolateFrom lists iptables interface patterns (e.g. "ovgw+") that traffic from a bridge network is
	// never forwarded to, besides the other bridge networks, which are always isolated. Default: ov's
	// overlay gateways ("ovgw+", see docs/overlay.md) and Docker's default bridge ("docker0").
	IsolateFrom []string
	// MTU of bridges and veths of networks that do not set one; 0 derives it from the interface of the
	// host's default route (1500 when there is none).
	MTU int
	// IPAM allocates container addresses; nil opens ipam.NewLocal(StateDir/ipam.json).
	IPAM Allocator
	// IPTables runs the iptables commands; nil uses the iptables binary in the calling process's
	// network namespace.
	IPTables iptables.Client
	// Netlink builds bridges, veths and container namespaces; nil is netlink.System{} (the kernel, in
	// the calling process's network namespace).
	Netlink netlink.Namespaces
	// Sysctl writes a sysctl of the calling process's network namespace (ip_forward, route_localnet);
	// nil writes under /proc/sys.
	Sysctl func(name, value string) error
	// Log receives the driver's log records; nil discards them.
	Log *slog.Logger

	// unguarded turns the loopback protection off (route_localnet on every bridge, ChainLoopback
	// empty), as ov was before issue 9. Tests only: the attack tests set it (OV_TEST_UNPROTECT=loopback)
	// to show that they fail without the protection.
	unguarded bool
}

// DefaultConfig returns the defaults for an agent on a real host.
func DefaultConfig() Config {
	return Config{
		StateDir:      "/var/lib/ov/network", // survives reboots, like the containers' state
		NetnsDir:      "/run/ov/netns",       // tmpfs: namespaces do not survive a reboot either
		DefaultBridge: "ov0",                 // like docker0
		AddressPools: []AddressPool{ // Docker's order: 172.17-31.x/16, then 192.168.x/20, then 10.x/24
			{netip.MustParsePrefix("172.17.0.0/16"), 16},
			{netip.MustParsePrefix("172.18.0.0/15"), 16},
			{netip.MustParsePrefix("172.20.0.0/14"), 16},
			{netip.MustParsePrefix("172.24.0.0/13"), 16},
			{netip.MustParsePrefix("192.168.0.0/16"), 20},
			{netip.MustParsePrefix("10.0.0.0/8"), 24},
		},
		IsolateFrom: []string{"ovgw+", "docker0"},
		MTU:         0, // derived from the uplink, so containers never send frames the uplink must fragment
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.StateDir == "" || c.NetnsDir == "" {
		return fmt.Errorf("network: StateDir and NetnsDir must be set: %w", errdefs.ErrInvalidArgument)
	}
	if c.DefaultBridge != "" && len(c.DefaultBridge) > 15 {
		return fmt.Errorf("network: bridge name %q is longer than 15 bytes: %w", c.DefaultBridge, errdefs.ErrInvalidArgument)
	}
	if c.DefaultSubnet != "" {
		if p, err := netip.ParsePrefix(c.DefaultSubnet); err != nil || !p.Addr().Is4() || p.Masked() != p {
			return fmt.Errorf("network: default subnet %q is not an IPv4 CIDR such as 172.17.0.0/16: %w", c.DefaultSubnet, errdefs.ErrInvalidArgument)
		}
	}
	if len(c.AddressPools) == 0 {
		return fmt.Errorf("network: no address pools: %w", errdefs.ErrInvalidArgument)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return fmt.Errorf("network: MTU %d is out of range 576-65535: %w", c.MTU, errdefs.ErrInvalidArgument)
	}
	return nil
}
