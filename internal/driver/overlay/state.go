package overlay

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/atomicfile"
)

// localEndpoint is a container of this host attached to an overlay network.
type localEndpoint struct {
	Container string `json:"container"`
	Netns     string `json:"netns"`
	IfName    string `json:"ifName"`
	IP        string `json:"ip"`
	// Names are the container's DNS names on the network as the controller should hold them (empty
	// while it is stopped); NamesPending: the controller does not have them yet.
	Names        []string `json:"names,omitempty"`
	NamesPending bool     `json:"namesPending,omitempty"`
	// Ports are the host ports the container publishes on this host (-p), forwarded to IP.
	Ports []api.PortSpec `json:"ports,omitempty"`
}

// netState is what the driver knows of one overlay network.
type netState struct {
	Network  api.Network              `json:"network"`
	Local    map[string]localEndpoint `json:"local,omitempty"`  // by container ID
	Remote   map[string]api.Endpoint  `json:"remote,omitempty"` // by host/container, every host's endpoints (this host's included)
	Revision int64                    `json:"revision"`         // watch resumes from here

	// Transient (not saved): whether the network's watch has caught up since the process started (a
	// snapshot or a progress event), and since when desired() has kept its remote kernel entries
	// waiting for it (keepPeersLocked); keepWarned: that wait has been logged.
	caughtUp   bool
	keepSince  time.Time
	keepWarned bool
}

// fileState is the driver's state file.
type fileState struct {
	// HostToken is where agents before the token file kept the host token; loadToken moves it.
	HostToken string               `json:"hostToken,omitempty"`
	Networks  map[string]*netState `json:"networks"`
	Hosts     map[string]api.Host  `json:"hosts,omitempty"` // last known host list (VTEPs, gossip seeds)
	// GossipKeyring is the last keyring the controller gave (the file is 0600): an agent restarted
	// while the controller is down gossips with it.
	GossipKeyring *api.GossipKeyring `json:"gossipKeyring,omitempty"`
}

func loadState(path string) (*fileState, error) {
	st := &fileState{Networks: map[string]*netState{}, Hosts: map[string]api.Host{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("overlay state %s is damaged (%v); move it away to start afresh (the controller's reconcile then releases this host's old addresses)", path, err)
	}
	if st.Networks == nil {
		st.Networks = map[string]*netState{}
	}
	if st.Hosts == nil {
		st.Hosts = map[string]api.Host{}
	}
	return st, nil
}

func remoteKey(host, container string) string { return host + "/" + container }

// persist writes the state file (flushed to disk) without holding d.mu during the write, so that
// desired() (the data plane's reconcile) never waits for an fsync. Every change of d.st is followed by
// a persist; writes land in the order of their snapshots, a snapshot older than the file is dropped.
func (d *Driver) persist() error {
	d.mu.Lock()
	b, err := json.MarshalIndent(d.st, "", "  ")
	d.gen++
	gen := d.gen
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode overlay state: %w", err)
	}
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	if gen < d.saved {
		return nil // a newer snapshot is already on disk
	}
	if err := atomicfile.WriteSync(d.cfg.StatePath, b, 0o600); err != nil {
		d.log.Error("write overlay state", "path", d.cfg.StatePath, "err", err)
		return fmt.Errorf("write overlay state %s: %w", d.cfg.StatePath, err)
	}
	d.saved = gen
	return nil
}
