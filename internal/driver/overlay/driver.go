package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/dns"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/membership"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/vxlan"
)

// Controller is the part of the controller API the driver uses (*client.Client satisfies it).
type Controller interface {
	ListNetworks(ctx context.Context) ([]api.Network, error)
	CreateNetwork(ctx context.Context, n api.Network) (api.Network, error)
	DeleteNetwork(ctx context.Context, name string, force bool) error
	RegisterHost(ctx context.Context, h api.Host) (api.Host, error)
	Heartbeat(ctx context.Context, host string) (api.Host, error)
	ListHosts(ctx context.Context) ([]api.Host, error)
	Allocate(ctx context.Context, ep api.Endpoint) (api.Endpoint, error)
	Release(ctx context.Context, network, host, container string) error
	Reconcile(ctx context.Context, host string, have []api.Endpoint) ([]api.Endpoint, error)
	WatchEndpoints(ctx context.Context, network string, fromRev int64, fn func(api.EndpointEvent) error) error
	// GossipKeyring returns the cluster's gossip keys (host token): registered hosts only.
	GossipKeyring(ctx context.Context) (api.GossipKeyring, error)
	// SetEndpointNames replaces the DNS names of this host's endpoint (owner-checked).
	SetEndpointNames(ctx context.Context, network, host, container string, names []string) (api.Endpoint, error)
}

// Dataplane converges the host's overlay kernel state (*vxlan.Driver satisfies it).
type Dataplane interface {
	Reconcile(ctx context.Context, s vxlan.State) error
	Run(ctx context.Context, desired func() vxlan.State) error
	Kick()
}

// networkDataplane is a Dataplane that reconciles the networks a watch event changed alone (their
// peers, not every network's: see vxlan.Driver.RunNetworks); *vxlan.Driver satisfies it. The driver
// runs it with desiredNetworks and kicks it per network from apply; any other Dataplane is run and
// kicked whole.
type networkDataplane interface {
	RunNetworks(ctx context.Context, desired func() vxlan.State, networks func(names []string) vxlan.State) error
	KickNetwork(name string)
}

// runDataplane runs the data plane until ctx ends.
func (d *Driver) runDataplane(ctx context.Context) {
	if nd, ok := d.dp.(networkDataplane); ok {
		_ = nd.RunNetworks(ctx, d.desired, d.desiredNetworks)
		return
	}
	_ = d.dp.Run(ctx, d.desired)
}

// reconcileDataplane reconciles the data plane now for a change of network's local containers
// (attach, detach). A data plane that reconciles networks alone does that network's (and a complete
// reconcile when the network is set up or torn down here: vxlan.Driver.ReconcileNetworksNow), with the
// state computed once no other reconcile runs: computed before, it could be older than a watch
// event's reconcile that ran in between, and would undo it until that network's next event.
func (d *Driver) reconcileDataplane(ctx context.Context, network string) error {
	if nd, ok := d.dp.(interface {
		ReconcileNetworksNow(ctx context.Context, names []string, networks func([]string) vxlan.State, desired func() vxlan.State) error
	}); ok {
		return nd.ReconcileNetworksNow(ctx, []string{network}, d.desiredNetworks, d.desired)
	}
	return d.dp.Reconcile(ctx, d.desired())
}

// kickNetwork asks the data plane to reconcile a network whose peers changed.
func (d *Driver) kickNetwork(name string) {
	if nd, ok := d.dp.(networkDataplane); ok {
		nd.KickNetwork(name)
		return
	}
	d.dp.Kick()
}

// Members tells which hosts are alive (*membership.Membership satisfies it). Run must not gossip
// before SetKeyring gave it the cluster's keys (it waits); SetHosts gives the registered hosts, the
// only members it may accept, and SetKeyring may be called again with a rotated keyring.
type Members interface {
	Run(ctx context.Context) error
	Members() []membership.Member
	Changes() <-chan struct{}
	SetHosts(hosts []membership.Host)
	SetKeyring(keys [][]byte) error
}

// Config configures the overlay driver.
type Config struct {
	// Host is this host's name in the cluster.
	Host string
	// Address is this host's underlay address (VTEP and gossip address).
	Address netip.Addr
	// Labels are registered with the host.
	Labels map[string]string
	// GossipPort is the memberlist port every agent of the cluster uses. Default 7946.
	GossipPort int
	// StatePath is the driver's state file. Required.
	StatePath string
	// TokenPath is the file holding the host token (mode 0600, written with an fsync). Default:
	// host-token beside StatePath.
	TokenPath string
	// TokenRefusals and TokenRefusalWindow: the host token is set aside (TokenPath.refused) and the
	// agent registers with the join token only after the controller refused it (401/404) this many
	// times in a row, over at least this long. Defaults 3 and 10s.
	TokenRefusals      int
	TokenRefusalWindow time.Duration
	// Connect returns a controller client that sends token: the join token first, then the host token
	// the controller hands out at the first registration.
	Connect func(token string) Controller
	// JoinToken registers this host the first time.
	JoinToken string
	// Dataplane programs the kernel.
	Dataplane Dataplane
	// Members reports liveness.
	Members Members
	// Netlink opens netlink handles in namespaces (to find containers' interfaces and the host's
	// routes). Default netlink.System{} (the kernel).
	Netlink netlink.Namespaces
	// RequestTimeout bounds each controller request made for a user (attach, create): with the
	// controller down, `ovctl run --network OVERLAY` fails after at most this long. Default 5s.
	RequestTimeout time.Duration
	// Heartbeat is how often the host tells the controller it is alive and refreshes the host list
	// (gossip seeds, VTEP addresses). Default 2s.
	Heartbeat time.Duration
	// Names is the agent's name table (docs/dns.md): the driver keeps the names of other hosts'
	// endpoints in it. Nil: none.
	Names *dns.Table
	// HostListEvery is how often a heartbeat also reads the whole host list (hostlist.go) when the
	// controller does not report a hosts revision (a controller older than that field); gossip changes
	// read it at once. Default 30s.
	HostListEvery time.Duration
	// HostListSafetyEvery is how often a heartbeat reads the host list when the controller reports a
	// hosts revision: the list is read when the revision changes, and this is only a safety net.
	// Default 10m.
	HostListSafetyEvery time.Duration
	// Keys is this host's WireGuard identity, for encrypted networks (docs/encryption.md). Nil: the
	// host serves no encrypted network (the data plane leaves them out, never in clear).
	Keys Keys
	// KeyMaxAge rotates the WireGuard key pair once it is older. 0: never by age.
	KeyMaxAge time.Duration
	// Log receives the driver's logs.
	Log *slog.Logger
	// Metrics, if set, receives the driver's metrics (metrics.go): make it with NewMetrics, one per
	// driver. Nil: no metrics.
	Metrics *Metrics
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.GossipPort == 0 {
		c.GossipPort = 7946
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 2 * time.Second
	}
	if c.HostListEvery == 0 {
		c.HostListEvery = 30 * time.Second
	}
	if c.HostListSafetyEvery == 0 {
		c.HostListSafetyEvery = 10 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.TokenPath == "" && c.StatePath != "" {
		c.TokenPath = filepath.Join(filepath.Dir(c.StatePath), "host-token")
	}
	if c.TokenRefusals == 0 {
		c.TokenRefusals = 3
	}
	if c.TokenRefusalWindow == 0 {
		c.TokenRefusalWindow = 10 * time.Second
	}
	if c.Netlink == nil {
		c.Netlink = netlink.System{}
	}
	switch {
	case !api.ValidName(c.Host):
		return fmt.Errorf("overlay: host name %q is not valid: %w", c.Host, errdefs.ErrInvalidArgument)
	case !c.Address.Is4():
		return fmt.Errorf("overlay: underlay address %q is not IPv4; give this host's IPv4 address on the underlay: %w", c.Address, errdefs.ErrInvalidArgument)
	case c.StatePath == "":
		return fmt.Errorf("overlay: no state path: %w", errdefs.ErrInvalidArgument)
	case c.Connect == nil || c.Dataplane == nil || c.Members == nil:
		return fmt.Errorf("overlay: Connect, Dataplane and Members are required: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// Driver is the overlay network driver of one agent.
type Driver struct {
	cfg Config
	log *slog.Logger
	dp  Dataplane

	mu      sync.Mutex
	st      *fileState
	ctl     Controller // with the host token once registered; nil before
	joinErr error      // why the host has not joined yet
	token   string     // the host token ("" before the first registration, or set aside)
	refused int        // refusals of token in a row (tokenRefused)
	lost    time.Time  // since when the controller has not answered (zero: it answers)
	listErr error      // why the last Networks answered from the state file (ListError)

	firstRefusal time.Time
	watches      map[string]context.CancelFunc // per network, stops its endpoint watch (watch.go); under mu
	hw           hostWatch                     // the host's one endpoint watch stream (watchmux.go); under mu
	runCtx       context.Context
	released     []api.Endpoint // releases that failed, retried with the heartbeat
	refreshNow   chan struct{}  // gossip changed: refresh the host list before the next heartbeat
	saveKick     chan struct{}  // a watch event changed the state: the saver writes it (saver.go)
	hostsRead    time.Time      // when the host list was last read (hostlist.go); under mu
	hostsRev     int64          // the hosts revision the last heartbeat reported (hostlist.go); under mu
	wg           sync.WaitGroup

	saveMu sync.Mutex // orders state file writes; gen and saved are the snapshot counters
	gen    uint64     // under mu
	saved  uint64     // under saveMu

	namesDirty map[string]bool // networks whose names changed since runNames last wrote them; under mu
	namesKick  chan struct{}   // wakes runNames
	// namesUnsynced are the networks whose names come from the state file, not yet confirmed by the
	// controller's watch (namesFromCopyLocked); under mu
	namesUnsynced map[string]bool
	pushMu        sync.Mutex // one pushNames at a time

	links  func(netnsPath string) ([]string, error) // interface names in a namespace (a seam for tests)
	routes func() ([]netlink.Route, error)          // the host's routes (a seam for tests)

	// releasing are the queued releases a heartbeat is sending, by network and container, each
	// closed when its heartbeat is done with them (releaseorder.go); under mu, nil when empty.
	releasing map[string]chan struct{}
}

var _ driver.NetworkDriver = (*Driver)(nil)

// New loads the driver's state. Nothing touches the kernel or the controller until Run.
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st, err := loadState(cfg.StatePath)
	if err != nil {
		return nil, err
	}
	d := &Driver{
		cfg:        cfg,
		log:        cfg.Log.With("component", "overlay"),
		dp:         cfg.Dataplane,
		st:         st,
		watches:    map[string]context.CancelFunc{},
		refreshNow: make(chan struct{}, 1),
		saveKick:   make(chan struct{}, 1),
		joinErr:    errors.New("the agent is starting"),
		namesDirty: map[string]bool{},
		namesKick:  make(chan struct{}, 1),
	}
	d.namesUnsynced = map[string]bool{}
	d.namesFromCopyLocked()
	d.writeNames(d.namesOf(nil)) // names resolve from the state file, before the controller answers
	d.links, d.routes = d.linkNames, d.hostRoutes
	if err := d.loadToken(); err != nil {
		return nil, err
	}
	if err := cfg.Metrics.attach(d); err != nil {
		return nil, fmt.Errorf("overlay metrics: %w", err)
	}
	return d, nil
}

// Run joins the cluster and keeps the data plane converged until ctx ends. It leaves the kernel and
// the controller's allocations as they are when it returns, so containers keep talking while the agent
// restarts.
func (d *Driver) Run(ctx context.Context) error {
	d.mu.Lock()
	d.runCtx = ctx
	d.mu.Unlock()
	d.gossipFromState()
	d.wg.Add(6)
	go func() { defer d.wg.Done(); d.runNames(ctx) }()
	go func() { defer d.wg.Done(); d.runSaver(ctx) }()
	go func() { defer d.wg.Done(); d.runMembers(ctx) }()
	go func() { defer d.wg.Done(); d.reportDataplane(ctx) }()
	go func() { defer d.wg.Done(); d.runDataplane(ctx) }()
	go func() { defer d.wg.Done(); d.joinLoop(ctx) }()
	for {
		select {
		case <-ctx.Done():
			d.wg.Wait()
			return nil
		case <-d.cfg.Members.Changes():
			d.dp.Kick()
			select { // and refresh the host list: a host gossip refused may have just registered
			case d.refreshNow <- struct{}{}:
			default:
			}
		}
	}
}

func (d *Driver) controller() Controller {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ctl
}

// ready returns the registered controller client, or an ErrUnavailable saying why there is none.
func (d *Driver) ready() (Controller, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctl == nil {
		return nil, fmt.Errorf("this host has not joined the cluster yet (%v); overlay networks need the controller, while bridge, host and none networks keep working: %w", d.joinErr, errdefs.ErrUnavailable)
	}
	return d.ctl, nil
}
