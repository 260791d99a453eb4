package driver

import (
	"fmt"
	"net/netip"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// PublishedPort is a host port that a driver publishes for a container (-p).
type PublishedPort struct {
	Network   string
	Container string // container ID
	Port      api.PortSpec
}

// PortPublisher is implemented by drivers that publish host ports. A host port (with its protocol and
// host address) is published by at most one container of the host, whatever its network and driver:
// each driver refuses clashes among its own endpoints, and the agent checks a request against the
// ports of the other drivers (CheckPorts) before it attaches.
type PortPublisher interface {
	PublishedPorts() []PublishedPort
}

// ParsePorts reads the published ports of a request in the API's wire form. Errors wrap
// errdefs.ErrInvalidArgument.
func ParsePorts(ms []api.PortMapping) ([]api.PortSpec, error) {
	var out []api.PortSpec
	for _, m := range ms {
		p := api.PortSpec{HostPort: m.HostPort, ContainerPort: m.ContainerPort, Proto: m.Protocol}
		if p.HostPort == 0 || p.ContainerPort == 0 || (p.Proto != "tcp" && p.Proto != "udp") {
			return nil, fmt.Errorf("invalid published port %s; %s: %w", m, api.PortSpecUsage, errdefs.ErrInvalidArgument)
		}
		if m.HostIP != "" {
			a, err := netip.ParseAddr(m.HostIP)
			if err != nil || !a.Is4() {
				return nil, fmt.Errorf("published port %s: host address %q is not an IPv4 address; %s: %w", m, m.HostIP, api.PortSpecUsage, errdefs.ErrInvalidArgument)
			}
			if !a.IsUnspecified() {
				p.HostIP = a
			}
		}
		for _, q := range out {
			if q.Clashes(p) {
				return nil, fmt.Errorf("invalid -p %q: host port %d/%s is already published by -p %q; publish each host port once: %w", p.String(), p.HostPort, p.Proto, q.String(), errdefs.ErrInvalidArgument)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// CheckPorts refuses the ports of container that clash with a port another container publishes
// (have): an errdefs.ErrConflict naming the holder.
func CheckPorts(container string, want []api.PortSpec, have []PublishedPort) error {
	for _, p := range want {
		for _, h := range have {
			if h.Container != container && h.Port.Clashes(p) {
				return fmt.Errorf("-p %s: host port %d/%s is already published by container %s (-p %s on network %q); choose another host port: %w",
					p, p.HostPort, p.Proto, api.ShortID(h.Container), h.Port, h.Network, errdefs.ErrConflict)
			}
		}
	}
	return nil
}
