package dns

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// Address is where every container finds the resolver, inside its own network namespace.
const Address = "127.0.0.11"

// Config is the host-wide configuration of a Server.
type Config struct {
	// Upstreams are the host's resolvers (HostUpstreams of the host's resolv.conf), used for containers
	// without --dns.
	Upstreams []netip.AddrPort
	TTL       uint32        // of answers from the table; 0: DefaultTTL
	Timeout   time.Duration // a forwarded query's whole budget before SERVFAIL; 0: DefaultTimeout
	// MaxInflight bounds forwarded queries in flight host-wide; beyond it, SERVFAIL. 0: DefaultMaxInflight.
	MaxInflight int
	Log         *slog.Logger
}

// Defaults of Config.
const (
	DefaultTTL         = 5
	DefaultTimeout     = 1500 * time.Millisecond
	DefaultMaxInflight = 1024
)

// Client is one container the resolver serves.
type Client struct {
	Container string // container ID
	Netns     string // path of its network namespace
	// Networks are the user-defined networks it is attached to: its answers come from these only.
	Networks  []string
	Upstreams []netip.AddrPort // its --dns servers; empty: the host's
	NoForward bool             // only --internal networks: names outside the table get no forwarding
}

// Server answers the containers of this host.
type Server struct {
	table *Table
	cfg   Config
}

// NewServer returns a server answering from t.
func NewServer(t *Table, cfg Config) *Server {
	return &Server{table: t, cfg: cfg}
}

// Add starts serving c: it opens 127.0.0.11:53 (UDP and TCP) in c's namespace. Adding a served
// container again updates it.
func (s *Server) Add(ctx context.Context, c Client) error { return nil }

// SetNetworks changes the networks a served container's answers come from (network connect/disconnect).
func (s *Server) SetNetworks(container string, networks []string) {}

// Remove stops serving a container and closes its sockets; removing what is not served does nothing.
func (s *Server) Remove(container string) {}

// Close stops serving every container.
func (s *Server) Close() {}

// HostUpstreams returns the nameservers of a resolv.conf on port 53, skipping loopback ones (a
// container cannot reach the host's 127.0.0.53).
func HostUpstreams(resolvConf []byte) []netip.AddrPort { return nil }
