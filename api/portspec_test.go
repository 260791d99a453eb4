package api

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ovnet/ov/internal/errdefs"
)

func TestParsePortSpec(t *testing.T) {
	tests := []struct {
		spec    string
		want    PortSpec
		wantErr string
	}{
		{spec: "8080:80", want: PortSpec{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		{spec: "53:53/udp", want: PortSpec{HostPort: 53, ContainerPort: 53, Proto: "udp"}},
		{spec: "127.0.0.1:8080:80/tcp", want: PortSpec{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		{spec: "0.0.0.0:1:65535", want: PortSpec{HostPort: 1, ContainerPort: 65535, Proto: "tcp"}},
		{spec: "80:abc", wantErr: `invalid -p "80:abc": container port "abc" is not a number; use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`},
		{spec: "x:80", wantErr: `invalid -p "x:80": host port "x" is not a number; use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`},
		{spec: "80", wantErr: `invalid -p "80": no host port (ov does not pick one); use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`},
		{spec: "80:80/sctp", wantErr: `invalid -p "80:80/sctp": protocol "sctp" is not tcp or udp; use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`},
		{spec: "70000:80", wantErr: `invalid -p "70000:80": host port 70000 is out of range 1-65535; use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`},
		{spec: "80:0", wantErr: `invalid -p "80:0": container port 0 is out of range 1-65535; use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`},
		{spec: "host:80:80", wantErr: `invalid -p "host:80:80": host address "host" is not an IPv4 address; use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`},
		{spec: "1:2:3:4", wantErr: `invalid -p "1:2:3:4": too many ':'; use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`},
		{spec: ":80", wantErr: `invalid -p ":80": host port is empty; use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParsePortSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("ParsePortSpec(%q) error = %v; want %q (invalid argument)", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if again, err := ParsePortSpec(got.String()); err != nil || again != got {
				t.Errorf("String %q does not parse back: %v %v", got, again, err)
			}
		})
	}
}

func TestParsePortSpecsDuplicate(t *testing.T) {
	_, err := ParsePortSpecs([]string{"8080:80", "127.0.0.1:8080:81"})
	want := `invalid -p "127.0.0.1:8080:81": host port 8080/tcp is already published by -p "8080:80/tcp"; publish each host port once`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v; want %q", err, want)
	}
	if _, err := ParsePortSpecs([]string{"8080:80", "8080:80/udp", "127.0.0.1:81:80", "127.0.0.2:81:80"}); err != nil {
		t.Fatalf("distinct protocols and host addresses are refused: %v", err)
	}
}
