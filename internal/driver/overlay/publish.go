package overlay

import (
	"fmt"
	"sort"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/vxlan"
)

var _ driver.PortPublisher = (*Driver)(nil)

// PublishedPorts lists the host ports the overlay containers of this host publish (-p), by network
// and container.
func (d *Driver) PublishedPorts() []driver.PublishedPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.publishedLocked()
}

func (d *Driver) publishedLocked() []driver.PublishedPort {
	var out []driver.PublishedPort
	for name, ns := range d.st.Networks {
		for _, l := range ns.Local {
			for _, p := range l.Ports {
				out = append(out, driver.PublishedPort{Network: name, Container: l.Container, Port: p})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Network != out[j].Network {
			return out[i].Network < out[j].Network
		}
		return out[i].Container < out[j].Container
	})
	return out
}

// checkPublishLocked refuses the ports a container asks to publish on an overlay network: on an internal
// network (nothing from outside enters it), or a host port another container of this host publishes
// on an overlay network already. Called with d.mu held.
func (d *Driver) checkPublishLocked(n api.Network, container string, ports []api.PortSpec) error {
	if len(ports) == 0 {
		return nil
	}
	if n.Internal {
		return fmt.Errorf("overlay network %q is internal: it cannot publish ports (-p); use another network: %w", n.Name, errdefs.ErrInvalidArgument)
	}
	return driver.CheckPorts(container, ports, d.publishedLocked())
}

// vxlanPorts converts the published ports of an endpoint for the data plane.
func vxlanPorts(ps []api.PortSpec) []vxlan.Port {
	if len(ps) == 0 {
		return nil
	}
	out := make([]vxlan.Port, len(ps))
	for i, p := range ps {
		out[i] = vxlan.Port{HostIP: p.HostIP, HostPort: p.HostPort, ContainerPort: p.ContainerPort, Proto: p.Proto}
	}
	return out
}
