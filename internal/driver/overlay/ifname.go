package overlay

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/netlink"
)

// linkNames lists the interface names of the namespace at path.
func (d *Driver) linkNames(path string) ([]string, error) {
	return netlink.LinkNames(d.cfg.Netlink, path)
}

// hostRoutes lists the IPv4 routes of the main table of the namespace the agent runs in (the host's).
func (d *Driver) hostRoutes() ([]netlink.Route, error) {
	h, err := d.cfg.Netlink.Handle("")
	if err != nil {
		return nil, fmt.Errorf("list the host's routes: %w", err)
	}
	defer h.Close()
	rs, err := netlink.Routes(h)
	if err != nil {
		return nil, fmt.Errorf("list the host's routes: %w", err)
	}
	return rs, nil
}

// checkRoutes refuses an overlay subnet that overlaps a route of this host (other than ov's own
// overlay gateways ovgw-<vni>, and the bridges ovbr-<vni> of the previous design until the data plane
// deletes them): containers on the network would shadow, or be shadowed by, what the host reaches
// through that route.
func (d *Driver) checkRoutes(network string, subnet netip.Prefix) error {
	routes, err := d.routes()
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst.Bits() == 0 || strings.HasPrefix(r.Dev, "ovgw-") || strings.HasPrefix(r.Dev, "ovbr-") || !r.Dst.Overlaps(subnet) {
			continue
		}
		return fmt.Errorf("overlay network %q: its subnet %s overlaps the route to %s via %s on host %s, so this host cannot serve it; create the network with another --subnet, or change the host's routes: %w", network, subnet, r.Dst, r.Dev, d.cfg.Host, errdefs.ErrConflict)
	}
	return nil
}

// freeIfName picks the first ethN that is neither in the namespace nor in taken.
func (d *Driver) freeIfName(path string, taken []string) (string, error) {
	names, err := d.links(path)
	if err != nil {
		return "", err
	}
	names = append(names, taken...)
	for i := 0; ; i++ {
		n := fmt.Sprintf("eth%d", i)
		if !slices.Contains(names, n) {
			return n, nil
		}
	}
}
