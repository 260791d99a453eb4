package driver

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

func TestParsePorts(t *testing.T) {
	cases := []struct {
		name string
		in   []api.PortMapping
		want []api.PortSpec
		err  error
	}{
		{name: "none"},
		{name: "every address", in: []api.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostIP: "0.0.0.0", HostPort: 53, ContainerPort: 53, Protocol: "udp"}},
			want: []api.PortSpec{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}, {HostPort: 53, ContainerPort: 53, Proto: "udp"}}},
		{name: "one address", in: []api.PortMapping{{HostIP: "192.168.1.5", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
			want: []api.PortSpec{{HostIP: netip.MustParseAddr("192.168.1.5"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}},
		{name: "IPv6 host address", in: []api.PortMapping{{HostIP: "::1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}, err: errdefs.ErrInvalidArgument},
		{name: "no host port", in: []api.PortMapping{{ContainerPort: 80, Protocol: "tcp"}}, err: errdefs.ErrInvalidArgument},
		{name: "sctp", in: []api.PortMapping{{HostPort: 1, ContainerPort: 80, Protocol: "sctp"}}, err: errdefs.ErrInvalidArgument},
		{name: "twice, once on every address", in: []api.PortMapping{{HostIP: "192.168.1.5", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 8080, ContainerPort: 81, Protocol: "tcp"}}, err: errdefs.ErrInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePorts(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("ParsePorts: %v; want %v", err, tc.err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ParsePorts = %v; want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("port %d = %v; want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCheckPorts(t *testing.T) {
	have := []PublishedPort{{Network: "front", Container: "c1", Port: api.PortSpec{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}}
	if err := CheckPorts("c2", []api.PortSpec{{HostIP: netip.MustParseAddr("10.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}, have); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("c2 on 10.0.0.1:8080 while c1 has every address: %v; want a conflict", err)
	}
	if err := CheckPorts("c1", []api.PortSpec{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}, have); err != nil {
		t.Errorf("c1 attaching again with its own port: %v", err)
	}
	if err := CheckPorts("c2", []api.PortSpec{{HostPort: 8080, ContainerPort: 80, Proto: "udp"}}, have); err != nil {
		t.Errorf("the other protocol: %v", err)
	}
}
