package api

import (
	"errors"
	"reflect"
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
		{"log opts", ContainerCreate{Image: "b", LogOpts: map[string]string{"max-size": "1m", "max-file": "2"}}, ""},
		{"unknown log opt", ContainerCreate{Image: "b", LogOpts: map[string]string{"mode": "non-blocking"}}, "--log-opt mode: unknown log option; use max-size"},
		{"bad log size", ContainerCreate{Image: "b", LogOpts: map[string]string{"max-size": "ten"}}, "--log-opt max-size=ten: want a size"},
		{"zero log size", ContainerCreate{Image: "b", LogOpts: map[string]string{"max-size": "0"}}, "max-size=0"},
		{"negative log size", ContainerCreate{Image: "b", LogOpts: map[string]string{"max-size": "-1"}}, "max-size=-1"},
		{"zero log files", ContainerCreate{Image: "b", LogOpts: map[string]string{"max-file": "0"}}, "max-file=0: want a number of files from 1 to 100"},
		{"too many log files", ContainerCreate{Image: "b", LogOpts: map[string]string{"max-file": "1000"}}, "max-file=1000"},
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

func TestLogLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  map[string]string
		size  int64
		files int
	}{
		{"defaults", nil, 10 << 20, 3},
		{"size only", map[string]string{"max-size": "512k"}, 512 << 10, 3},
		{"files only", map[string]string{"max-file": "1"}, 10 << 20, 1},
		{"both, units as docker", map[string]string{"max-size": "1g", "max-file": "5"}, 1 << 30, 5},
		{"bytes", map[string]string{"max-size": "4096"}, 4096, 3},
		{"mb", map[string]string{"max-size": "2MB"}, 2 << 20, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ContainerCreate{Image: "b", LogOpts: tc.opts}
			size, files, err := c.LogLimits()
			if err != nil || size != tc.size || files != tc.files {
				t.Errorf("LogLimits() = %d, %d, %v; want %d, %d", size, files, err, tc.size, tc.files)
			}
		})
	}
}

func TestParseMount(t *testing.T) {
	m, err := ParseMount("/a:/b:ro")
	if err != nil || !reflect.DeepEqual(m, Mount{Source: "/a", Destination: "/b", ReadOnly: true, CreateSource: true}) {
		t.Errorf("got %+v %v", m, err)
	}
	for _, bad := range []string{"a:/b", "/a", "/a:/b:xx", "/a:b"} {
		if _, err := ParseMount(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
