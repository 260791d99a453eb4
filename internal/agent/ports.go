package agent

import (
	"context"
	"fmt"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
)

// attachPublishing attaches a container through the driver dname. When it publishes host ports, it
// first refuses a host port that a container of another driver publishes (each driver refuses the
// clashes among its own endpoints), holding portsMu until the attach is done so that two creates on
// different drivers cannot both take one port.
func (a *Agent) attachPublishing(ctx context.Context, dname string, req driver.AttachRequest) (api.ContainerEndpoint, error) {
	d := a.cfg.Drivers[dname]
	if len(req.Ports) == 0 {
		return d.Attach(ctx, req)
	}
	want, err := driver.ParsePorts(req.Ports)
	if err != nil {
		return api.ContainerEndpoint{}, fmt.Errorf("network %q: %w", req.Network, err)
	}
	a.portsMu.Lock()
	defer a.portsMu.Unlock()
	for other, od := range a.cfg.Drivers {
		pp, ok := od.(driver.PortPublisher)
		if other == dname || !ok {
			continue
		}
		if err := driver.CheckPorts(req.Container, want, pp.PublishedPorts()); err != nil {
			return api.ContainerEndpoint{}, err
		}
	}
	return d.Attach(ctx, req)
}
