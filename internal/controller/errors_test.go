package controller_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// TestBadInputs: every bad request is refused with its class and a message that names the problem.
func TestBadInputs(t *testing.T) {
	s, _ := embeddedController(t)
	ctx := context.Background()
	if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "back", Subnet: "10.1.2.0/24", VNI: 5000}); err != nil {
		t.Fatal(err)
	}
	h1 := registerHost(t, s, "h1", "192.168.60.1")
	registerHost(t, s, "h2", "192.168.60.2")
	if _, err := h1.Allocate(ctx, api.Endpoint{Network: "back", Host: "h1", Container: "holder", IP: "10.1.2.50"}); err != nil {
		t.Fatal(err)
	}
	badToken := newClient(t, s.URL, "not-a-token")
	noToken := newClient(t, s.URL, "")
	forged := newClient(t, s.URL, "ovh.h1.0000")

	tests := []struct {
		name  string
		do    func() error
		class error
		want  string
	}{
		{"malformed CIDR", func() error {
			_, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "x", Subnet: "10.1.0.0/33"})
			return err
		}, errdefs.ErrInvalidArgument, `subnet "10.1.0.0/33" is not an IPv4 CIDR`},
		{"host bits set", func() error {
			_, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "x", Subnet: "10.5.0.1/16"})
			return err
		}, errdefs.ErrInvalidArgument, "did you mean 10.5.0.0/16"},
		{"overlap", func() error {
			_, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "front", Subnet: "10.1.0.0/16"})
			return err
		}, errdefs.ErrConflict, `network "front": subnet 10.1.0.0/16 overlaps network "back" (10.1.2.0/24); choose another subnet`},
		{"bad gateway", func() error {
			_, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "x", Subnet: "10.7.0.0/24", Gateway: "10.8.0.1"})
			return err
		}, errdefs.ErrInvalidArgument, "gateway 10.8.0.1 is not a usable address of subnet 10.7.0.0/24"},
		{"duplicate name", func() error {
			_, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "back", Subnet: "10.9.0.0/24"})
			return err
		}, errdefs.ErrAlreadyExists, `network "back" already exists`},
		{"VNI taken", func() error {
			_, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "x", VNI: 5000})
			return err
		}, errdefs.ErrConflict, `VNI 5000 is used by network "back"`},
		{"VNI out of range", func() error {
			_, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "x", VNI: 1 << 24})
			return err
		}, errdefs.ErrInvalidArgument, "VNI 16777216 is out of range"},
		{"bridge driver", func() error {
			_, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "x", Driver: api.DriverBridge})
			return err
		}, errdefs.ErrInvalidArgument, "local to one host"},
		{"bad name", func() error {
			_, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "a/b"})
			return err
		}, errdefs.ErrInvalidArgument, `network name "a/b"`},
		{"requested IP outside the subnet", func() error {
			_, err := h1.Allocate(ctx, api.Endpoint{Network: "back", Host: "h1", Container: "c", IP: "10.2.0.5"})
			return err
		}, errdefs.ErrInvalidArgument, "address 10.2.0.5 is outside subnet 10.1.2.0/24"},
		{"requested gateway", func() error {
			_, err := h1.Allocate(ctx, api.Endpoint{Network: "back", Host: "h1", Container: "c", IP: "10.1.2.1"})
			return err
		}, errdefs.ErrInvalidArgument, "is the gateway"},
		{"requested IP taken", func() error {
			_, err := h1.Allocate(ctx, api.Endpoint{Network: "back", Host: "h1", Container: "c", IP: "10.1.2.50"})
			return err
		}, errdefs.ErrConflict, "address 10.1.2.50 is already used by container holder on host h1"},
		{"owner holds another address", func() error {
			_, err := h1.Allocate(ctx, api.Endpoint{Network: "back", Host: "h1", Container: "holder", IP: "10.1.2.51"})
			return err
		}, errdefs.ErrConflict, "already holds 10.1.2.50, not 10.1.2.51"},
		{"unknown network (allocate)", func() error {
			_, err := h1.Allocate(ctx, api.Endpoint{Network: "nope", Host: "h1", Container: "c"})
			return err
		}, errdefs.ErrNotFound, `network "nope" does not exist`},
		{"unknown network (get)", func() error {
			_, err := s.Admin.GetNetwork(ctx, "nope")
			return err
		}, errdefs.ErrNotFound, `network "nope" does not exist`},
		{"unknown network (release)", func() error {
			return h1.Release(ctx, "nope", "h1", "c")
		}, errdefs.ErrNotFound, `network "nope" does not exist`},
		{"unknown network (watch)", func() error {
			return s.Admin.WatchEndpoints(ctx, "nope", 0, func(api.EndpointEvent) error { return nil })
		}, errdefs.ErrNotFound, `network "nope" does not exist`},
		{"unknown network (delete)", func() error {
			return s.Admin.DeleteNetwork(ctx, "nope", false)
		}, errdefs.ErrNotFound, `network "nope" does not exist`},
		{"unknown host (allocate)", func() error {
			_, err := s.Admin.Allocate(ctx, api.Endpoint{Network: "back", Host: "ghost", Container: "c"})
			return err
		}, errdefs.ErrNotFound, `host "ghost" is not registered`},
		{"unknown host (node rm)", func() error {
			return s.Admin.RemoveHost(ctx, "ghost")
		}, errdefs.ErrNotFound, `host "ghost" is not registered`},
		{"bad token", func() error {
			_, err := badToken.ListNetworks(ctx)
			return err
		}, errdefs.ErrUnauthorized, "the token is not valid"},
		{"forged host token", func() error {
			_, err := forged.ListNetworks(ctx)
			return err
		}, errdefs.ErrUnauthorized, "the token is not valid"},
		{"no token", func() error {
			_, err := noToken.ListNetworks(ctx)
			return err
		}, errdefs.ErrUnauthorized, "send Authorization: Bearer"},
		{"join token cannot create networks", func() error {
			_, err := s.Join.CreateNetwork(ctx, api.Network{Name: "x"})
			return err
		}, errdefs.ErrUnauthorized, "needs the admin token"},
		{"join token cannot take over a registered host", func() error {
			_, err := s.Join.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.168.60.9"})
			return err
		}, errdefs.ErrAlreadyExists, `host "h1" is already registered`},
		{"host token acts only for its host", func() error {
			_, err := h1.Allocate(ctx, api.Endpoint{Network: "back", Host: "h2", Container: "c"})
			return err
		}, errdefs.ErrUnauthorized, `the token of host "h1" may act only for that host, not for "h2"`},
		{"host token cannot remove hosts", func() error {
			return h1.RemoveHost(ctx, "h2")
		}, errdefs.ErrUnauthorized, "needs the admin token"},
		{"bad host address", func() error {
			_, err := s.Join.RegisterHost(ctx, api.Host{Name: "h3", Address: "nowhere"})
			return err
		}, errdefs.ErrInvalidArgument, `address "nowhere" is not an IPv4 address`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant class %v with %q", err, tc.class, tc.want)
			}
		})
	}
	// Nothing of the refused requests was written.
	nets, err := s.Admin.ListNetworks(ctx)
	if err != nil || len(nets) != 1 {
		t.Fatalf("networks after bad requests: %+v, %v", nets, err)
	}
	eps, _, err := s.Admin.ListEndpoints(ctx, "back")
	if err != nil || len(eps) != 1 {
		t.Fatalf("endpoints after bad requests: %+v, %v", eps, err)
	}
}
