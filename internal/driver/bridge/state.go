package bridge

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/atomicfile"
)

// Network is a bridge network of this host as the driver keeps it (and as `network inspect` shows it).
type Network struct {
	Name     string            `json:"name"`
	ID       string            `json:"id"`
	Bridge   string            `json:"bridge"` // Linux bridge device, e.g. ov0
	Subnet   netip.Prefix      `json:"subnet"`
	Gateway  netip.Addr        `json:"gateway"` // address of the bridge
	IPRange  netip.Prefix      `json:"ipRange,omitzero"`
	MTU      int               `json:"mtu"`
	Internal bool              `json:"internal,omitempty"` // no outbound NAT, no traffic leaves the bridge
	Labels   map[string]string `json:"labels,omitempty"`
	Created  time.Time         `json:"created"`
}

// Endpoint is one container's interface on a bridge network.
type Endpoint struct {
	Network      string         `json:"network"`
	Container    string         `json:"container"` // container ID
	Netns        string         `json:"netns"`     // path of the container's network namespace
	IfName       string         `json:"ifName"`    // interface in the container: eth0, eth1, ...
	HostIf       string         `json:"hostIf"`    // host end of the veth, a port of the bridge
	Address      netip.Prefix   `json:"address"`   // IP with the subnet's prefix length
	Gateway      netip.Addr     `json:"gateway"`
	MAC          string         `json:"mac"`
	DefaultRoute bool           `json:"defaultRoute"` // a default route via Gateway (the first interface)
	Ports        []api.PortSpec `json:"ports,omitempty"`
}

// IP returns the endpoint's address without prefix length.
func (e Endpoint) IP() netip.Addr { return e.Address.Addr() }

// state is what the driver keeps on disk: every network and endpoint.
type state struct {
	Networks  map[string]*Network  `json:"networks"`  // by name
	Endpoints map[string]*Endpoint `json:"endpoints"` // by endpointKey
}

func endpointKey(network, container string) string { return network + "/" + container }

func loadState(path string) (*state, error) {
	st := &state{Networks: map[string]*Network{}, Endpoints: map[string]*Endpoint{}}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network: read state %s: %w", path, err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("network: state file %s is corrupt (%v); move it aside and restart to begin empty", path, err)
	}
	if st.Networks == nil {
		st.Networks = map[string]*Network{}
	}
	if st.Endpoints == nil {
		st.Endpoints = map[string]*Endpoint{}
	}
	return st, nil
}

// save writes the state atomically and flushed to disk (atomicfile.WriteSync).
func (st *state) save(path string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("network: encode state: %w", err)
	}
	if err := atomicfile.WriteSync(path, b, 0o600); err != nil {
		return fmt.Errorf("network: write state %s: %w", path, err)
	}
	return nil
}
