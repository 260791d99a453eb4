package bridge

import "github.com/ovnet/ov/internal/driver"

var _ driver.PortPublisher = (*Driver)(nil)

// PublishedPorts lists the host ports the bridge containers of this host publish (-p), by network and
// container.
func (d *Driver) PublishedPorts() []driver.PublishedPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []driver.PublishedPort
	for _, e := range d.sortedEndpoints() {
		for _, p := range e.Ports {
			out = append(out, driver.PublishedPort{Network: e.Network, Container: e.Container, Port: p})
		}
	}
	return out
}
