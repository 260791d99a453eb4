package api

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ovnet/ov/internal/errdefs"
)

// Types of the controller API (docs/api.md) beyond Network, Host and Endpoint.

// EndpointList answers GET /v1/networks/{name}/endpoints: the endpoints of a network as of Revision.
// A watch started from Revision misses nothing.
type EndpointList struct {
	Endpoints []Endpoint `json:"endpoints"`
	Revision  int64      `json:"revision"`
}

// Endpoint event types on the watch stream.
const (
	// EventSnapshot carries the complete set of endpoints (Endpoints) as of Revision: replace
	// everything known about the network with it. It is the first event of a watch without a revision,
	// and comes again whenever the requested history was compacted.
	EventSnapshot = "snapshot"
	// EventPut: Endpoint was allocated or changed at Revision.
	EventPut = "put"
	// EventDelete: Endpoint was released at Revision.
	EventDelete = "delete"
	// EventProgress: nothing changed up to Revision (a heartbeat; resume from it).
	EventProgress = "progress"
	// EventRemoved (host watch stream GET /v1/endpoints?watch=true only): the network was removed
	// from the cluster; the stream carries no more events of it, and a new stream naming it is
	// answered 404.
	EventRemoved = "removed"
)

// EndpointEvent is one line (newline-delimited JSON) of GET /v1/networks/{name}/endpoints?watch=1, and
// of the host watch stream GET /v1/endpoints?watch=1&networks=... (Network says which network).
//
// One change of the cluster store can make many events with one Revision (a reconcile or a host
// removal releases up to 40 addresses in one transaction). A watch may resume only from a revision
// whose events were all applied: the last revision of a snapshot, a progress event or an event marked
// Last, never the revision of an event without Last (the rest of its revision would be skipped).
type EndpointEvent struct {
	Type      string     `json:"type"`
	Endpoint  *Endpoint  `json:"endpoint,omitempty"`  // put, delete
	Endpoints []Endpoint `json:"endpoints,omitempty"` // snapshot
	Revision  int64      `json:"revision"`
	// Last marks the last put or delete of its revision: once it is applied, everything up to
	// Revision is. Snapshot and progress events are complete by themselves. (A controller older than
	// this field never sets it; its revisions are complete when an event of a later revision, a
	// progress or a snapshot arrives.)
	Last bool `json:"last,omitempty"`

	// Network names the network the event is about. Every event of the host watch stream
	// (GET /v1/endpoints?watch=true&networks=...) carries it; a controller older than that stream
	// leaves it out of per-network streams.
	Network string `json:"network,omitempty"`
}

// EndpointNames is the body of PUT /v1/networks/{name}/endpoints/{host}/{container}/names: the
// endpoint's DNS names from now on (empty while its container is stopped). See Endpoint.Names.
type EndpointNames struct {
	Names []string `json:"names"`
}

// ReconcileRequest is the body of POST /v1/hosts/{name}/reconcile: the endpoints the host really has.
type ReconcileRequest struct {
	Endpoints []Endpoint `json:"endpoints"`
}

// ReconcileResponse lists the allocations of the host the controller released because the host did not
// report them.
type ReconcileResponse struct {
	Released []Endpoint `json:"released"`
}

// Validate checks an allocation request: network, host and container named, IP empty or an IPv4
// address.
func (e *Endpoint) Validate() error {
	if !ValidName(e.Network) {
		return fmt.Errorf("endpoint: network name %q is not valid: %w", e.Network, errdefs.ErrInvalidArgument)
	}
	if !ValidName(e.Host) {
		return fmt.Errorf("endpoint: host name %q is not valid: %w", e.Host, errdefs.ErrInvalidArgument)
	}
	if !validContainer(e.Container) {
		return fmt.Errorf("endpoint: container %q: use 1-128 letters, digits, '_', '.' or '-': %w", e.Container, errdefs.ErrInvalidArgument)
	}
	if e.IP != "" {
		if a, err := netip.ParseAddr(e.IP); err != nil || !a.Is4() {
			return fmt.Errorf("endpoint: address %q is not an IPv4 address: %w", e.IP, errdefs.ErrInvalidArgument)
		}
	}
	return ValidateEndpointNames(e.Names)
}

func validContainer(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// GossipKeyring is the set of keys that encrypt and authenticate the agents' gossip (memberlist,
// AES-GCM). The controller keeps it and hands it only to registered hosts (host token) and admins.
// Keys[0] is the primary: new messages are encrypted with it; the others are still accepted, so a
// rotation (a new primary, the old one kept as secondary for a while) loses no message.
type GossipKeyring struct {
	Keys    []string `json:"keys"`    // base64 (standard encoding) of 32-byte AES-256 keys; Keys[0] primary
	Version int64    `json:"version"` // grows with every rotation; agents refetch when it changes
}

// JoinToken answers GET /v1/join-token and POST /v1/join-token/rotate (admin): the token agents
// register new hosts with, and when it stops working.
type JoinToken struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires,omitempty"` // zero: never (--join-token-ttl 0)
}

// JoinTokenRotate is the body of POST /v1/join-token/rotate.
type JoinTokenRotate struct {
	// TTL is how long the new token works, as a Go duration ("24h", "30m"); empty: the controller's
	// --join-token-ttl; "0" never expires.
	TTL string `json:"ttl,omitempty"`
}
