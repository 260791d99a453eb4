package overlay

import (
	"context"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
)

var _ driver.Pruner = (*Driver)(nil)

// Prune implements driver.Pruner: it forgets the local endpoints of containers the agent does not know,
// left by an agent that died between attaching a container and writing its record (or between deleting
// the record of a removed container and detaching it). The agent calls it at start-up, before Run: the
// registration that follows reports the host's endpoints without them, so the controller releases
// their addresses, and the data plane's first reconcile drops their entries. On a driver that has
// joined already, their addresses are released at once (retried with the heartbeat).
func (d *Driver) Prune(ctx context.Context, known func(containerID string) bool) error {
	type local struct {
		network string
		ep      localEndpoint
	}
	var all []local
	d.mu.Lock()
	for name, ns := range d.st.Networks {
		for _, l := range ns.Local {
			all = append(all, local{name, l})
		}
	}
	d.mu.Unlock()
	var gone []api.Endpoint
	for _, l := range all {
		if known(l.ep.Container) {
			continue
		}
		if _, ok := d.forgetLocked(l.network, l.ep.Container); ok {
			d.log.Info("forgetting the overlay endpoint of a container the agent does not know", "network", l.network, "container", api.ShortID(l.ep.Container), "ip", l.ep.IP)
			gone = append(gone, api.Endpoint{Network: l.network, Host: d.cfg.Host, Container: l.ep.Container, IP: l.ep.IP})
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if err := d.persist(); err != nil {
		return err
	}
	if ctl := d.controller(); ctl != nil {
		for _, ep := range gone {
			d.release(ctl, ep)
		}
	}
	return nil
}
