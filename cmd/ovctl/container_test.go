package main

import (
	"testing"

	"github.com/ovnet/ov/api"
)

// TestContainerStatus: ps says why a container is quarantined, with what the agent knows of its state.
func TestContainerStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    api.Container
		want string
	}{
		{"created", api.Container{State: api.ContainerState{Status: api.StateCreated}}, "Created"},
		{"quarantined, unknown", api.Container{Quarantine: "record missing", State: api.ContainerState{Status: api.StateUnknown}},
			"unknown (record quarantined: record missing)"},
		{"quarantined, created", api.Container{Quarantine: "record missing", State: api.ContainerState{Status: api.StateCreated}},
			"Created (record quarantined: record missing)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := containerStatus(tc.c); got != tc.want {
				t.Errorf("status %q, want %q", got, tc.want)
			}
		})
	}
}
