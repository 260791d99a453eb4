package overlay

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/vxlan"
)

// TestAttachPublishes: -p on an overlay network reaches the data plane's state and the state file (an
// agent restarted publishes the same ports); a host port is published once on the host, whatever the
// overlay network; an internal network refuses -p; a refused attach holds no address.
func TestAttachPublishes(t *testing.T) {
	ctl := newFakeController()
	ctl.networks["back"] = api.Network{Name: "back", Driver: api.DriverOverlay, Subnet: "10.21.0.0/24", Gateway: "10.21.0.1", VNI: 4097}
	ctl.networks["secret"] = api.Network{Name: "secret", Driver: api.DriverOverlay, Subnet: "10.22.0.0/24", Gateway: "10.22.0.1", VNI: 4098, Internal: true}
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	ctx := context.Background()
	web := []api.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostIP: "127.0.0.1", HostPort: 9000, ContainerPort: 90, Protocol: "udp"}}
	if _, err := h.d.Attach(ctx, driver.AttachRequest{Network: "front", Container: "c1", Netns: "/ns/c1", Ports: web}); err != nil {
		t.Fatal(err)
	}
	want := []vxlan.Port{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}, {HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 9000, ContainerPort: 90, Proto: "udp"}}
	if diff := cmp.Diff(want, portsIn(h.d.desired(), "c1"), eqNet); diff != "" {
		t.Fatalf("ports in the desired state (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]driver.PublishedPort{
		{Network: "front", Container: "c1", Port: api.PortSpec{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		{Network: "front", Container: "c1", Port: api.PortSpec{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 9000, ContainerPort: 90, Proto: "udp"}},
	}, h.d.PublishedPorts(), eqNet); diff != "" {
		t.Fatalf("PublishedPorts (-want +got):\n%s", diff)
	}
	held := len(ctl.held())

	refused := []struct {
		name, network string
		ports         []api.PortMapping
		class         error
		says          string
	}{
		{"same host port on another network", "back", []api.PortMapping{{HostIP: "192.168.77.11", HostPort: 8080, ContainerPort: 8080, Protocol: "tcp"}}, errdefs.ErrConflict, "already published by container c1"},
		{"same host port on the same network", "front", []api.PortMapping{{HostPort: 9000, ContainerPort: 9000, Protocol: "udp"}}, errdefs.ErrConflict, "already published by container c1"},
		{"internal network", "secret", []api.PortMapping{{HostPort: 8081, ContainerPort: 80, Protocol: "tcp"}}, errdefs.ErrInvalidArgument, "is internal"},
		{"twice in one request", "back", []api.PortMapping{{HostPort: 8081, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 8081, ContainerPort: 81, Protocol: "tcp"}}, errdefs.ErrInvalidArgument, "publish each host port once"},
		{"bad protocol", "back", []api.PortMapping{{HostPort: 8081, ContainerPort: 80, Protocol: "sctp"}}, errdefs.ErrInvalidArgument, "invalid published port"},
	}
	for _, r := range refused {
		_, err := h.d.Attach(ctx, driver.AttachRequest{Network: r.network, Container: "c2", Netns: "/ns/c2", Ports: r.ports})
		if !errors.Is(err, r.class) || err == nil || !strings.Contains(err.Error(), r.says) {
			t.Errorf("%s: Attach: %v; want %v saying %q", r.name, err, r.class, r.says)
		}
	}
	if n := len(ctl.held()); n != held {
		t.Errorf("the refused attaches hold %d addresses more", n-held)
	}
	// Other ports, and the same port number with the other protocol, are free.
	if _, err := h.d.Attach(ctx, driver.AttachRequest{Network: "back", Container: "c2", Netns: "/ns/c2",
		Ports: []api.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "udp"}, {HostPort: 8081, ContainerPort: 80, Protocol: "tcp"}}}); err != nil {
		t.Fatal(err)
	}

	// A restart publishes the same ports, from the state file alone.
	h.stop()
	d2, err := New(h.d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h.d.desired(), d2.desired(), eqNet); diff != "" {
		t.Fatalf("desired state after a restart (-before +after):\n%s", diff)
	}
	// Detached: its ports are free again.
	if err := d2.Detach(ctx, "front", "c1"); err != nil {
		t.Fatal(err)
	}
	if ps := portsIn(d2.desired(), "c1"); ps != nil || len(d2.PublishedPorts()) != 2 {
		t.Fatalf("after detach: c1's ports %v, published %v", ps, d2.PublishedPorts())
	}
}

var eqNet = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func portsIn(s vxlan.State, container string) []vxlan.Port {
	for _, ns := range s.Networks {
		for _, e := range ns.Endpoints {
			if e.ContainerID == container {
				return e.Ports
			}
		}
	}
	return nil
}
