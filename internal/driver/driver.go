package driver

import (
	"context"

	"github.com/ovnet/ov/api"
)

// AttachRequest asks a driver to connect a container's namespace to one of its networks. It carries
// what the user asked, in the API's types; the driver checks it.
type AttachRequest struct {
	Network   string            // network name
	Container string            // container ID: owns the address and names the endpoint
	Name      string            // container name
	Netns     string            // path of the container's network namespace
	IP        string            // static IPv4 address; empty: allocate one
	Ports     []api.PortMapping // published ports (bridge and overlay networks)
	// Names are the container's DNS names on the network (name, hostname, aliases there): drivers
	// whose endpoints are known on other hosts (overlay) carry them there.
	Names []string
}

// NetworkDriver builds the networks of one driver (bridge, overlay) on this host. Every method is
// idempotent: creating what exists as asked, attaching what is attached, deleting or detaching what is
// gone are not errors. Errors wrap errdefs classes.
type NetworkDriver interface {
	// CreateNetwork builds n, choosing what n leaves empty (subnet, gateway), and returns it as built.
	CreateNetwork(ctx context.Context, n api.Network) (api.Network, error)
	// DeleteNetwork removes the network; the agent has detached every container first.
	DeleteNetwork(ctx context.Context, name string) error
	// Networks lists the driver's networks on this host.
	Networks(ctx context.Context) ([]api.Network, error)
	// Attach connects a container to a network and returns its endpoint; Detach undoes it.
	Attach(ctx context.Context, req AttachRequest) (api.ContainerEndpoint, error)
	Detach(ctx context.Context, network, containerID string) error
}

// Pruner is implemented by drivers that can drop what they hold for containers the agent does not
// know (left behind by a crash in the middle of a create or remove). The agent calls it at start-up.
type Pruner interface {
	Prune(ctx context.Context, known func(containerID string) bool) error
}

// NetnsManager owns containers' network namespaces, bind-mounted so they outlive processes.
// CreateNetns returns the namespace's path (the same one when called again); RemoveNetns of a
// namespace that is not there is not an error.
type NetnsManager interface {
	CreateNetns(ctx context.Context, containerID string) (string, error)
	RemoveNetns(ctx context.Context, containerID string) error
}

// StaleLister is implemented by drivers whose network list can come from a copy when the owner of
// the networks (the controller) does not answer: ListError says why the last Networks did (nil: it
// was current), so that a network missing from it is reported as unknown for now, not as absent.
type StaleLister interface {
	ListError() error
}
