package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Address is where every container finds the resolver, inside its own network namespace.
const Address = "127.0.0.11"

// Port is the resolver's port.
const Port = 53

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
//
// What a container asks is answered so:
//   - a name of the table (container name, 12-digit short ID, hostname, alias, NAME.NETWORK) on a
//     network the container is attached to: its addresses there, all of them, rotated by one per query
//     (A; AAAA gets the IPv6 ones, usually none: NOERROR without answers, never NXDOMAIN), TTL Config.TTL;
//   - a PTR of such an address: the name of its container;
//   - an unknown single-label name: NXDOMAIN at once, nothing leaves the host;
//   - anything else: forwarded, from the agent's namespace, to the container's upstreams (or the
//     host's), over UDP, again over TCP when the answer is truncated, over TCP when asked over TCP;
//     SERVFAIL when every upstream fails within Config.Timeout or Config.MaxInflight forwarded queries
//     are already in flight. A NoForward container gets SERVFAIL without anything being sent, as Docker
//     answers on --internal networks (libnetwork's resolver answers SERVFAIL when it does not proxy).
//
// Malformed queries get FORMERR (or nothing when not even the header is readable); a problem is
// logged once per minute per kind, never per query.
type Server struct {
	table *Table
	cfg   Config
	ttl   uint32
	logs  logLimiter
	rot   atomic.Uint64 // rotation of several addresses, one step per query
	busy  atomic.Int64  // forwarded queries in flight

	ctx    context.Context // cancelled by Close: in-flight forwards stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	clients map[string]*served
	closed  bool
}

// served is one container being served.
type served struct {
	id    string
	netns string
	nsID  nsIdentity // of the namespace its sockets are in
	cfg   atomic.Pointer[clientCfg]
	socks *sockets
	tcp   tcpConns
}

// NewServer returns a server answering from t.
func NewServer(t *Table, cfg Config) *Server {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{table: t, cfg: cfg, ttl: cfg.TTL, ctx: ctx, cancel: cancel, clients: map[string]*served{}}
	s.logs.log = cfg.Log.With("component", "dns")
	return s
}

func newClientCfg(c Client) *clientCfg {
	return &clientCfg{networks: slices.Clone(c.Networks), upstreams: slices.Clone(c.Upstreams), noForward: c.NoForward}
}

// Add starts serving c: it opens 127.0.0.11:53 (UDP and TCP) in c's namespace, bringing its lo up.
// Call it before the container's process starts, so that its first query finds the resolver. Adding a
// served container again updates its networks, upstreams and forwarding, and re-opens its sockets if
// its namespace changed (another path, or a new namespace at the same path: a restarted container).
// A namespace serves one container: adding another container in a served namespace is an error. On
// error nothing new of c is served (a previous registration stays as it was).
func (s *Server) Add(ctx context.Context, c Client) error {
	if c.Container == "" || c.Netns == "" {
		return fmt.Errorf("dns: serve container %q in namespace %q: both the container ID and its network namespace are needed", c.Container, c.Netns)
	}
	return s.add(ctx, c, netip.AddrPortFrom(netip.MustParseAddr(Address), Port))
}

// add serves c on addr in c.Netns ("" in the caller's namespace: unit tests).
func (s *Server) add(ctx context.Context, c Client, addr netip.AddrPort) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns: the resolver is closed")
	}
	id := netnsIdentity(c.Netns)
	if old := s.clients[c.Container]; old != nil && old.netns == c.Netns && c.Netns != "" && old.nsID == id {
		old.cfg.Store(newClientCfg(c))
		return nil
	}
	for other, sv := range s.clients {
		// SO_REUSEPORT would let a second client bind beside the first, and each would get a share of
		// the other's queries, answered from the wrong networks.
		if other != c.Container && id != (nsIdentity{}) && sv.nsID == id {
			return fmt.Errorf("dns: serve container %s: its network namespace %s is already served for container %s (a container sharing another's network namespace uses that one's resolver)", c.Container, c.Netns, other)
		}
	}
	socks, err := openSockets(c.Netns, addr)
	if err != nil {
		return fmt.Errorf("dns: serve container %s: %w", c.Container, err)
	}
	s.register(c, id, socks)
	return nil
}

// register serves c on socks (s.mu held), in place of what served it before.
func (s *Server) register(c Client, id nsIdentity, socks *sockets) {
	if old := s.clients[c.Container]; old != nil {
		s.stop(old)
	}
	sv := &served{id: c.Container, netns: c.Netns, nsID: id, socks: socks}
	sv.cfg.Store(newClientCfg(c))
	s.clients[c.Container] = sv
	for _, u := range socks.udp {
		s.wg.Go(func() { s.serveUDP(sv, u) })
	}
	s.wg.Go(func() { s.serveTCP(sv) })
}

// SetNetworks changes the networks a served container's answers come from (network connect/disconnect).
func (s *Server) SetNetworks(container string, networks []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.clients[container]
	if sv == nil {
		return
	}
	c := *sv.cfg.Load()
	c.networks = slices.Clone(networks)
	sv.cfg.Store(&c)
}

// Remove stops serving a container and closes its sockets; removing what is not served does nothing.
func (s *Server) Remove(container string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.clients[container]; sv != nil {
		s.stop(sv)
		delete(s.clients, container)
	}
}

// stop closes a served container's sockets and TCP connections; its goroutines then end.
func (s *Server) stop(sv *served) {
	sv.socks.close()
	sv.tcp.closeAll()
}

// Close stops serving every container and waits until the server's goroutines have ended.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for id, sv := range s.clients {
		s.stop(sv)
		delete(s.clients, id)
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// lookupServed returns the registration of a container (tests).
func (s *Server) lookupServed(container string) *served {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[container]
}
