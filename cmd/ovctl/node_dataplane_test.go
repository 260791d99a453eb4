package main

import (
	"testing"

	"github.com/ovnet/ov/api"
)

func TestDataplaneColumn(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    api.Host
		want string
	}{
		{"unknown", api.Host{}, "-"},
		{"reachable", api.Host{Dataplane: api.DataplaneReachable}, "reachable"},
		{"unreachable", api.Host{Dataplane: api.DataplaneUnreachable, UnreachableFrom: []string{"host2", "host3"}}, "unreachable (from host2,host3)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := dataplaneColumn(tc.h); got != tc.want {
				t.Fatalf("dataplaneColumn = %q, want %q", got, tc.want)
			}
		})
	}
}
