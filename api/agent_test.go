package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

func TestContainerCreateValidate(t *testing.T) {
	cases := []struct {
		name string
		c    ContainerCreate
		want string // "" = valid
	}{
		{"minimal", ContainerCreate{Image: "busybox"}, ""},
		{"no image", ContainerCreate{}, "no image"},
		{"bad name", ContainerCreate{Image: "b", Name: "a b"}, "container name"},
		{"bad env", ContainerCreate{Image: "b", Env: []string{"=x"}}, "KEY=VALUE"},
		{"relative workdir", ContainerCreate{Image: "b", WorkingDir: "tmp"}, "absolute"},
		{"bad ip", ContainerCreate{Image: "b", IP: "10.0.0"}, "--ip"},
		{"ip with host network", ContainerCreate{Image: "b", IP: "10.0.0.2", Network: "host"}, "cannot be used"},
		{"ports with none", ContainerCreate{Image: "b", Network: "none", Ports: []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "tcp"}}}, "-p cannot"},
		{"port twice", ContainerCreate{Image: "b", Ports: []PortMapping{{HostPort: 8, ContainerPort: 1, Protocol: "tcp"}, {HostPort: 8, ContainerPort: 2, Protocol: "tcp"}}}, "twice"},
		{"tiny memory", ContainerCreate{Image: "b", Memory: 1024}, "minimum"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("got %v, want an invalid-argument error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseMount(t *testing.T) {
	m, err := ParseMount("/a:/b:ro")
	if err != nil || m != (Mount{Source: "/a", Destination: "/b", ReadOnly: true}) {
		t.Errorf("got %+v %v", m, err)
	}
	for _, bad := range []string{"a:/b", "/a", "/a:/b:xx", "/a:b"} {
		if _, err := ParseMount(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
