package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver/bridge"
	"github.com/ovnet/ov/internal/errdefs"
)

// Bridge adapts the local bridge driver (bridge.Driver) to the agent's NetworkDriver.
type Bridge struct{ D *bridge.Driver }

var (
	_ NetworkDriver = Bridge{}
	_ NetnsManager  = (*bridge.Driver)(nil)
)

func bridgeToAPI(n bridge.Network) api.Network {
	out := api.Network{Name: n.Name, Driver: api.DriverBridge, Subnet: n.Subnet.String(), Gateway: n.Gateway.String(),
		MTU: n.MTU, Internal: n.Internal, Labels: n.Labels, ID: n.ID, Created: n.Created}
	if n.IPRange.IsValid() {
		out.IPRange = n.IPRange.String()
	}
	return out
}

// CreateNetwork implements NetworkDriver.
func (b Bridge) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	out, err := b.D.CreateNetwork(ctx, n)
	if err != nil {
		return api.Network{}, err
	}
	return bridgeToAPI(out), nil
}

// DeleteNetwork implements NetworkDriver.
func (b Bridge) DeleteNetwork(ctx context.Context, name string) error {
	return b.D.DeleteNetwork(ctx, name)
}

// Networks implements NetworkDriver.
func (b Bridge) Networks(ctx context.Context) ([]api.Network, error) {
	var out []api.Network
	for _, n := range b.D.Networks() {
		out = append(out, bridgeToAPI(n))
	}
	return out, nil
}

// Attach implements NetworkDriver.
func (b Bridge) Attach(ctx context.Context, req AttachRequest) (api.ContainerEndpoint, error) {
	r := bridge.AttachRequest{Network: req.Network, Container: req.Container, Netns: req.Netns}
	if req.IP != "" {
		ip, err := netip.ParseAddr(req.IP)
		if err != nil {
			return api.ContainerEndpoint{}, fmt.Errorf("--ip %q is not an IPv4 address: %w", req.IP, errdefs.ErrInvalidArgument)
		}
		r.IP = ip
	}
	for _, p := range req.Ports {
		m := api.PortSpec{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Proto: p.Protocol}
		if p.HostIP != "" {
			ip, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return api.ContainerEndpoint{}, fmt.Errorf("-p %s: bad host address: %w", p, errdefs.ErrInvalidArgument)
			}
			if !ip.IsUnspecified() {
				m.HostIP = ip
			}
		}
		r.Ports = append(r.Ports, m)
	}
	e, err := b.D.Attach(ctx, r)
	if err != nil {
		return api.ContainerEndpoint{}, err
	}
	return api.ContainerEndpoint{Network: e.Network, Driver: api.DriverBridge, Interface: e.IfName, IP: e.IP().String(),
		PrefixLen: e.Address.Bits(), Gateway: e.Gateway.String(), MAC: e.MAC}, nil
}

// Detach implements NetworkDriver.
func (b Bridge) Detach(ctx context.Context, network, containerID string) error {
	return b.D.Detach(ctx, network, containerID)
}

var _ Pruner = Bridge{}

// Prune implements Pruner: it detaches endpoints of unknown containers and removes their namespaces.
func (b Bridge) Prune(ctx context.Context, known func(string) bool) error {
	var errs []error
	seen := map[string]bool{}
	for _, e := range b.D.Endpoints("") {
		if known(e.Container) || seen[e.Container] {
			continue
		}
		seen[e.Container] = true
		errs = append(errs, b.D.DetachAll(ctx, e.Container))
		if e.Netns == b.D.NetnsPath(e.Container) {
			errs = append(errs, b.D.RemoveNetns(ctx, e.Container))
		}
	}
	return errors.Join(errs...)
}
