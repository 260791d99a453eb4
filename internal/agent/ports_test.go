package agent

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
)

// portDriver publishes the ports of the requests it attached.
type portDriver struct {
	driver.NetworkDriver // unused methods
	name                 string
	published            []driver.PublishedPort
}

func (d *portDriver) Attach(ctx context.Context, req driver.AttachRequest) (api.ContainerEndpoint, error) {
	ps, err := driver.ParsePorts(req.Ports)
	if err != nil {
		return api.ContainerEndpoint{}, err
	}
	for _, p := range ps {
		d.published = append(d.published, driver.PublishedPort{Network: req.Network, Container: req.Container, Port: p})
	}
	return api.ContainerEndpoint{Network: req.Network, Driver: d.name}, nil
}

func (d *portDriver) PublishedPorts() []driver.PublishedPort { return d.published }

// TestAttachPublishingAcrossDrivers: a host port published by a container of one driver is refused to
// a container of another driver (each driver checks its own); other ports, another protocol or
// another host address are not.
func TestAttachPublishingAcrossDrivers(t *testing.T) {
	br, ov := &portDriver{name: "bridge"}, &portDriver{name: "overlay"}
	a := &Agent{cfg: Config{Drivers: map[string]driver.NetworkDriver{"bridge": br, "overlay": ov}}}
	ctx := context.Background()
	attach := func(dname, container string, ports ...api.PortMapping) error {
		_, err := a.attachPublishing(ctx, dname, driver.AttachRequest{Network: dname + "net", Container: container, Ports: ports})
		return err
	}
	if err := attach("bridge", "b1", api.PortMapping{HostIP: "192.168.1.5", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []api.PortMapping{
		{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},                        // every address includes 192.168.1.5
		{HostIP: "192.168.1.5", HostPort: 8080, ContainerPort: 81, Protocol: "tcp"}, // the same address
	} {
		err := attach("overlay", "o1", p)
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "already published by container b1") {
			t.Errorf("-p %s on the overlay while the bridge publishes 192.168.1.5:8080: %v; want a conflict naming b1", p, err)
		}
	}
	if len(ov.published) != 0 {
		t.Fatalf("the overlay driver attached a refused request: %v", ov.published)
	}
	for _, p := range []api.PortMapping{
		{HostIP: "192.168.1.6", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: 8080, ContainerPort: 80, Protocol: "udp"},
		{HostPort: 8081, ContainerPort: 80, Protocol: "tcp"},
	} {
		if err := attach("overlay", "o-"+p.String(), p); err != nil {
			t.Errorf("-p %s: %v; want it published", p, err)
		}
	}
	// The bridge driver is not asked about its own ports (it checks them itself), the overlay's are.
	if err := attach("bridge", "b2", api.PortMapping{HostPort: 8081, ContainerPort: 80, Protocol: "tcp"}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("-p 8081:80 on the bridge while the overlay publishes it: %v; want a conflict", err)
	}
	if err := attach("bridge", "b3", api.PortMapping{HostPort: 8080, ContainerPort: 80, Protocol: "udp", HostIP: "bad"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a bad host address: %v; want invalid argument", err)
	}
}
