package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ovnet/ov/internal/atomicfile"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/membership"
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
}

// Dataplane converges the host's overlay kernel state (*vxlan.Driver satisfies it).
type Dataplane interface {
	Reconcile(ctx context.Context, s vxlan.State) error
	Run(ctx context.Context, desired func() vxlan.State) error
	Kick()
}

// Members tells which hosts are alive (*membership.Membership satisfies it).
type Members interface {
	Run(ctx context.Context) error
	Members() []membership.Member
	Changes() <-chan struct{}
	SetSeeds(seeds []string)
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
	// Connect returns a controller client that sends token: the join token first, then the host token
	// the controller hands out at the first registration.
	Connect func(token string) Controller
	// JoinToken registers this host the first time.
	JoinToken string
	// Dataplane programs the kernel.
	Dataplane Dataplane
	// Members reports liveness.
	Members Members
	// RequestTimeout bounds each controller request made for a user (attach, create): with the
	// controller down, `ovctl run --network OVERLAY` fails after at most this long. Default 5s.
	RequestTimeout time.Duration
	// Heartbeat is how often the host tells the controller it is alive and refreshes the host list
	// (gossip seeds, VTEP addresses). Default 2s.
	Heartbeat time.Duration
	// Log receives the driver's logs.
	Log *slog.Logger
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
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case !api.ValidName(c.Host):
		return fmt.Errorf("overlay: host name %q is not valid: %w", c.Host, errdefs.ErrInvalidArgument)
	case !c.Address.Is4():
		return fmt.Errorf("overlay: underlay address %q is not IPv4; set --underlay-address: %w", c.Address, errdefs.ErrInvalidArgument)
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

	mu       sync.Mutex
	st       *fileState
	ctl      Controller // with the host token once registered; nil before
	joinErr  error      // why the host has not joined yet
	watches  map[string]context.CancelFunc
	runCtx   context.Context
	released []api.Endpoint // releases that failed, retried with the heartbeat
	wg       sync.WaitGroup

	saveMu sync.Mutex // orders state file writes; gen and saved are the snapshot counters
	gen    uint64     // under mu
	saved  uint64     // under saveMu

	links  func(netnsPath string) ([]string, error) // interface names in a namespace (a seam for tests)
	routes func() ([]hostRoute, error)              // the host's routes (a seam for tests)
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
	return &Driver{
		cfg:     cfg,
		log:     cfg.Log.With("component", "overlay"),
		dp:      cfg.Dataplane,
		st:      st,
		watches: map[string]context.CancelFunc{},
		joinErr: errors.New("the agent is starting"),
		links:   links,
		routes:  hostRoutes,
	}, nil
}

// Run joins the cluster and keeps the data plane converged until ctx ends. It leaves the kernel and
// the controller's allocations as they are when it returns, so containers keep talking while the agent
// restarts.
func (d *Driver) Run(ctx context.Context) error {
	d.mu.Lock()
	d.runCtx = ctx
	d.mu.Unlock()
	d.wg.Add(3)
	go func() { defer d.wg.Done(); d.runMembers(ctx) }()
	go func() { defer d.wg.Done(); _ = d.dp.Run(ctx, d.desired) }()
	go func() { defer d.wg.Done(); d.joinLoop(ctx) }()
	for {
		select {
		case <-ctx.Done():
			d.wg.Wait()
			return nil
		case <-d.cfg.Members.Changes():
			d.dp.Kick()
		}
	}
}

// runMembers runs gossip until ctx ends, starting it again (and saying why) when it fails, e.g. while
// the gossip port is still held by a previous agent process.
func (d *Driver) runMembers(ctx context.Context) {
	for {
		err := d.cfg.Members.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		d.log.Error("gossip stopped; starting it again in 1s", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// joinLoop registers the host (retrying until it succeeds), then heartbeats; when the controller no
// longer knows the host (it was removed with ovctl node rm while this agent ran), it joins again.
func (d *Driver) joinLoop(ctx context.Context) {
	for ctx.Err() == nil {
		d.joinWithRetry(ctx)
		if !d.heartbeatUntilLost(ctx) {
			return
		}
	}
}

// joinWithRetry calls join until it succeeds or ctx ends.
func (d *Driver) joinWithRetry(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for {
		err := d.join(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		d.mu.Lock()
		d.joinErr = err
		d.mu.Unlock()
		d.log.Warn("cannot join the cluster yet; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// heartbeatUntilLost heartbeats every Config.Heartbeat. It returns true when the controller no longer
// knows the host (after forgetting the host token and stopping the watches), false when ctx ends.
func (d *Driver) heartbeatUntilLost(ctx context.Context) bool {
	t := time.NewTicker(d.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		err := d.heartbeat(ctx)
		if !errors.Is(err, errdefs.ErrUnauthorized) && !errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		d.log.Warn("the controller no longer knows this host (removed?); joining again", "err", err)
		d.mu.Lock()
		d.ctl, d.joinErr = nil, err
		d.st.HostToken = ""
		for name, cancel := range d.watches {
			cancel()
			delete(d.watches, name)
		}
		d.mu.Unlock()
		return true
	}
}

// join registers the host, reports the endpoints it really has (the controller releases the others),
// learns the other hosts and starts the endpoint watches.
func (d *Driver) join(ctx context.Context) error {
	d.mu.Lock()
	token := d.st.HostToken
	d.mu.Unlock()
	me := api.Host{Name: d.cfg.Host, Address: d.cfg.Address.String(), Labels: d.cfg.Labels}
	var ctl Controller
	if token != "" {
		c := d.cfg.Connect(token)
		if _, err := c.RegisterHost(ctx, me); err == nil {
			ctl = c
		} else if !errors.Is(err, errdefs.ErrUnauthorized) {
			return fmt.Errorf("register host %q: %w", d.cfg.Host, err)
		} else {
			d.log.Warn("the host token was refused (host removed from the cluster?); joining again with the join token", "err", err)
		}
	}
	if ctl == nil {
		if d.cfg.JoinToken == "" {
			return fmt.Errorf("host %q is not registered and no join token is configured; set --join-token: %w", d.cfg.Host, errdefs.ErrUnauthorized)
		}
		h, err := d.cfg.Connect(d.cfg.JoinToken).RegisterHost(ctx, me)
		if err != nil {
			return fmt.Errorf("register host %q with the join token: %w", d.cfg.Host, err)
		}
		if h.Token == "" {
			return fmt.Errorf("register host %q: the controller sent no host token: %w", d.cfg.Host, errdefs.ErrUnavailable)
		}
		d.mu.Lock()
		d.st.HostToken = h.Token
		d.mu.Unlock()
		if err := d.persist(); err != nil {
			return fmt.Errorf("keep the host token: %w", err)
		}
		ctl = d.cfg.Connect(h.Token)
	}
	released, err := ctl.Reconcile(ctx, d.cfg.Host, d.haveEndpoints())
	if err != nil {
		return fmt.Errorf("report this host's endpoints to the controller: %w", err)
	}
	for _, ep := range released {
		d.log.Info("controller released an address this host no longer uses", "network", ep.Network, "container", ep.Container, "ip", ep.IP)
	}
	// Claim again what this host's containers hold: a no-op normally (same owner, same address), but
	// after the host was removed from the cluster (ovctl node rm) or etcd was restored from an older
	// snapshot, the allocations are gone and must come back before anyone else gets the addresses.
	for _, ep := range d.haveEndpoints() {
		if _, err := ctl.Allocate(ctx, ep); err != nil {
			if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrAlreadyExists) {
				d.log.Error("the address of a running container was given to another container while this host was away; restart the container to give it a new address", "network", ep.Network, "container", ep.Container, "ip", ep.IP, "err", err)
				continue
			}
			if errors.Is(err, errdefs.ErrNotFound) {
				d.log.Warn("a container is on an overlay network the cluster no longer has", "network", ep.Network, "container", ep.Container)
				continue
			}
			return fmt.Errorf("claim the address %s of container %s on network %q: %w", ep.IP, api.ShortID(ep.Container), ep.Network, err)
		}
	}
	d.mu.Lock()
	d.ctl, d.joinErr = ctl, nil
	d.mu.Unlock()
	d.refreshHosts(ctx)
	d.refreshNetworks(ctx)
	d.mu.Lock()
	for name, ns := range d.st.Networks {
		if len(ns.Local) > 0 {
			d.ensureWatchLocked(name)
		}
	}
	d.mu.Unlock()
	d.log.Info("joined the cluster", "host", d.cfg.Host, "address", d.cfg.Address)
	return nil
}

// haveEndpoints lists this host's overlay endpoints as the controller knows them.
func (d *Driver) haveEndpoints() []api.Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []api.Endpoint
	for name, ns := range d.st.Networks {
		for _, l := range ns.Local {
			out = append(out, api.Endpoint{Network: name, Host: d.cfg.Host, Container: l.Container, IP: l.IP})
		}
	}
	return out
}

// heartbeat tells the controller the host is alive, refreshes the host list and retries failed
// releases. It returns the heartbeat's error.
func (d *Driver) heartbeat(ctx context.Context) error {
	ctl := d.controller()
	if ctl == nil {
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	if _, err := ctl.Heartbeat(hctx, d.cfg.Host); err != nil {
		d.log.Debug("heartbeat", "err", err)
		return err
	}
	d.refreshHosts(hctx)
	d.mu.Lock()
	pending := d.released
	d.released = nil
	d.mu.Unlock()
	for _, ep := range pending {
		if err := ctl.Release(hctx, ep.Network, ep.Host, ep.Container); err != nil {
			d.mu.Lock()
			d.released = append(d.released, ep)
			d.mu.Unlock()
		}
	}
	return nil
}

// refreshHosts learns the other hosts: their VTEP addresses and gossip seeds.
func (d *Driver) refreshHosts(ctx context.Context) {
	ctl := d.controller()
	if ctl == nil {
		return
	}
	hosts, err := ctl.ListHosts(ctx)
	if err != nil {
		d.log.Debug("list hosts", "err", err)
		return
	}
	seeds := make([]string, 0, len(hosts))
	m := make(map[string]api.Host, len(hosts))
	for _, h := range hosts {
		m[h.Name] = h
		if h.Name != d.cfg.Host {
			seeds = append(seeds, net.JoinHostPort(h.Address, strconv.Itoa(d.cfg.GossipPort)))
		}
	}
	d.cfg.Members.SetSeeds(seeds)
	d.mu.Lock()
	changed := !equalHosts(d.st.Hosts, m)
	if changed {
		d.st.Hosts = m
	}
	d.mu.Unlock()
	if changed {
		d.dp.Kick()
		_ = d.persist()
	}
}

func equalHosts(a, b map[string]api.Host) bool {
	if len(a) != len(b) {
		return false
	}
	for k, h := range a {
		if o, ok := b[k]; !ok || o.Address != h.Address {
			return false
		}
	}
	return true
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

// unreachable words a failed controller call for the user.
func unreachable(what string, err error) error {
	if errdefs.HTTPStatus(err) == 500 || errors.Is(err, errdefs.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		msg := strings.TrimSuffix(err.Error(), ": "+errdefs.ErrUnavailable.Error())
		return fmt.Errorf("%s: the controller cannot be reached: %s; overlay networks need the controller, while bridge, host and none networks keep working: %w", what, msg, errdefs.ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// refreshNetworks reads the overlay networks from the controller into the state.
func (d *Driver) refreshNetworks(ctx context.Context) ([]api.Network, error) {
	ctl, err := d.ready()
	if err != nil {
		return nil, err
	}
	nets, err := ctl.ListNetworks(ctx)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	seen := map[string]bool{}
	changed := false
	var out []api.Network
	for _, n := range nets {
		if n.Driver != api.DriverOverlay {
			continue
		}
		seen[n.Name] = true
		out = append(out, n)
		if ns, ok := d.st.Networks[n.Name]; !ok {
			d.st.Networks[n.Name] = &netState{Network: n}
			changed = true
		} else if !reflect.DeepEqual(ns.Network, n) {
			ns.Network = n
			changed = true
		}
	}
	for name, ns := range d.st.Networks {
		if !seen[name] && len(ns.Local) == 0 {
			delete(d.st.Networks, name)
			changed = true
		}
	}
	d.mu.Unlock()
	if changed { // this runs for every network lookup of every `ovctl run`: write only news
		_ = d.persist()
	}
	return out, nil
}

// Networks lists the overlay networks. With the controller unreachable it answers from the last known
// list, so that the agent keeps resolving network names (and bridge networks keep working).
func (d *Driver) Networks(ctx context.Context) ([]api.Network, error) {
	rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	if nets, err := d.refreshNetworks(rctx); err == nil {
		return nets, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []api.Network
	for _, ns := range d.st.Networks {
		out = append(out, ns.Network)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CreateNetwork creates an overlay network through the controller.
func (d *Driver) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	ctl, err := d.ready()
	if err != nil {
		return api.Network{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	out, err := ctl.CreateNetwork(rctx, n)
	if err != nil {
		return api.Network{}, unreachable(fmt.Sprintf("create overlay network %q", n.Name), err)
	}
	d.mu.Lock()
	if _, ok := d.st.Networks[out.Name]; !ok {
		d.st.Networks[out.Name] = &netState{Network: out}
	}
	d.mu.Unlock()
	return out, nil
}

// DeleteNetwork refuses: an overlay network belongs to the cluster, and a host's token may not delete
// it. ovctl sends the deletion to the controller with the admin token instead.
func (d *Driver) DeleteNetwork(ctx context.Context, name string) error {
	return fmt.Errorf("network %q is an overlay network of the cluster: delete it through the controller with the admin token (ovctl --controller URL --token TOKEN network rm %s): %w", name, name, errdefs.ErrUnauthorized)
}

// Attach gives the container an address on the network (from the controller), connects its namespace
// to the network's bridge on this host and programs the data plane.
func (d *Driver) Attach(ctx context.Context, req driver.AttachRequest) (api.ContainerEndpoint, error) {
	ctl, err := d.ready()
	if err != nil {
		return api.ContainerEndpoint{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	if len(req.Ports) > 0 {
		return api.ContainerEndpoint{}, fmt.Errorf("overlay network %q: -p publishes ports on bridge networks only; containers on an overlay network are reached directly at their address: %w", req.Network, errdefs.ErrInvalidArgument)
	}
	if _, err := d.refreshNetworks(rctx); err != nil {
		return api.ContainerEndpoint{}, unreachable(fmt.Sprintf("overlay network %q", req.Network), err)
	}
	d.mu.Lock()
	ns, ok := d.st.Networks[req.Network]
	d.mu.Unlock()
	if !ok {
		return api.ContainerEndpoint{}, fmt.Errorf("overlay network %q: no such network; see ovctl network ls: %w", req.Network, errdefs.ErrNotFound)
	}
	n := ns.Network
	if subnet, err := netip.ParsePrefix(n.Subnet); err == nil && !d.serves(req.Network) {
		if err := d.checkRoutes(req.Network, subnet); err != nil {
			return api.ContainerEndpoint{}, err
		}
	}
	ep, err := ctl.Allocate(rctx, api.Endpoint{Network: req.Network, Host: d.cfg.Host, Container: req.Container, IP: req.IP})
	if err != nil {
		return api.ContainerEndpoint{}, unreachable(fmt.Sprintf("allocate an address on overlay network %q", req.Network), err)
	}
	ifName, err := d.freeIfName(req.Netns, d.ifNamesOf(req.Container))
	if err != nil {
		d.release(ctl, ep)
		return api.ContainerEndpoint{}, err
	}
	d.mu.Lock()
	ns = d.st.Networks[req.Network]
	if ns.Local == nil {
		ns.Local = map[string]localEndpoint{}
	}
	if old, ok := ns.Local[req.Container]; ok {
		ifName = old.IfName // attaching again: keep the interface it has
	}
	ns.Local[req.Container] = localEndpoint{Container: req.Container, Netns: req.Netns, IfName: ifName, IP: ep.IP}
	if ns.Remote == nil {
		ns.Remote = map[string]api.Endpoint{}
	}
	ns.Remote[remoteKey(ep.Host, ep.Container)] = ep
	d.ensureWatchLocked(req.Network)
	d.mu.Unlock()
	if err = d.persist(); err == nil {
		err = d.program(ctx, req.Netns, ifName)
	}
	if err != nil {
		d.forget(req.Network, req.Container)
		_ = d.dp.Reconcile(context.Background(), d.desired())
		d.release(ctl, ep)
		return api.ContainerEndpoint{}, fmt.Errorf("connect container %s to overlay network %q: %w", api.ShortID(req.Container), req.Network, err)
	}
	p, _ := netip.ParsePrefix(n.Subnet)
	return api.ContainerEndpoint{
		Network:   req.Network,
		Driver:    api.DriverOverlay,
		Interface: ifName,
		IP:        ep.IP,
		PrefixLen: p.Bits(),
		Gateway:   n.Gateway,
		MAC:       vxlan.MACFromIP(netip.MustParseAddr(ep.IP)).String(),
	}, nil
}

// serves reports whether this host has containers on the network already (its bridge and routes exist).
func (d *Driver) serves(network string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	ns, ok := d.st.Networks[network]
	return ok && len(ns.Local) > 0
}

// program reconciles the data plane now and checks that the container's interface exists; a failure
// elsewhere (another network) does not fail this attach.
func (d *Driver) program(ctx context.Context, netnsPath, ifName string) error {
	err := d.dp.Reconcile(ctx, d.desired())
	if names, lerr := d.links(netnsPath); lerr == nil && slices.Contains(names, ifName) {
		if err != nil {
			d.log.Warn("data plane reconcile reported errors elsewhere", "err", err)
		}
		return nil
	} else if err == nil {
		err = fmt.Errorf("interface %s did not appear in %s (%v)", ifName, netnsPath, lerr)
	}
	return err
}

func (d *Driver) ifNamesOf(container string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for _, ns := range d.st.Networks {
		if l, ok := ns.Local[container]; ok {
			names = append(names, l.IfName)
		}
	}
	return names
}

// forget drops a local endpoint from the state; it reports whether there was one.
func (d *Driver) forget(network, container string) (localEndpoint, bool) {
	l, ok := d.forgetLocked(network, container)
	if ok {
		_ = d.persist()
	}
	return l, ok
}

func (d *Driver) forgetLocked(network, container string) (localEndpoint, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ns, ok := d.st.Networks[network]
	if !ok {
		return localEndpoint{}, false
	}
	l, ok := ns.Local[container]
	if !ok {
		return localEndpoint{}, false
	}
	delete(ns.Local, container)
	delete(ns.Remote, remoteKey(d.cfg.Host, container))
	if len(ns.Local) == 0 {
		if cancel, ok := d.watches[network]; ok {
			cancel()
			delete(d.watches, network)
		}
	}
	return l, true
}

func (d *Driver) release(ctl Controller, ep api.Endpoint) {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.RequestTimeout)
	defer cancel()
	if err := ctl.Release(ctx, ep.Network, ep.Host, ep.Container); err != nil {
		d.log.Warn("release failed; retrying with the heartbeat", "network", ep.Network, "container", ep.Container, "err", err)
		d.mu.Lock()
		d.released = append(d.released, ep)
		d.mu.Unlock()
	}
}

// Detach disconnects the container from the network on this host and releases its address.
func (d *Driver) Detach(ctx context.Context, network, containerID string) error {
	l, ok := d.forget(network, containerID)
	if !ok {
		return nil
	}
	if err := d.dp.Reconcile(ctx, d.desired()); err != nil {
		d.log.Warn("data plane reconcile after detach", "network", network, "container", api.ShortID(containerID), "err", err)
	}
	ep := api.Endpoint{Network: network, Host: d.cfg.Host, Container: containerID, IP: l.IP}
	if ctl := d.controller(); ctl != nil {
		d.release(ctl, ep)
	} else {
		d.mu.Lock()
		d.released = append(d.released, ep)
		d.mu.Unlock()
	}
	return nil
}

// ensureWatchLocked starts the endpoint watch of a network if it is not running; d.mu is held.
func (d *Driver) ensureWatchLocked(network string) {
	if _, ok := d.watches[network]; ok || d.ctl == nil || d.runCtx == nil {
		return
	}
	ctx, cancel := context.WithCancel(d.runCtx)
	d.watches[network] = cancel
	ctl := d.ctl
	rev := int64(0)
	if ns, ok := d.st.Networks[network]; ok {
		rev = ns.Revision
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for ctx.Err() == nil {
			err := ctl.WatchEndpoints(ctx, network, rev, func(ev api.EndpointEvent) error {
				d.apply(network, ev)
				return nil
			})
			if ctx.Err() != nil {
				return
			}
			d.log.Warn("endpoint watch ended; restarting", "network", network, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			d.mu.Lock()
			if ns, ok := d.st.Networks[network]; ok {
				rev = ns.Revision
			}
			d.mu.Unlock()
		}
	}()
}

// apply records one watch event and kicks the data plane. It never blocks on the kernel.
func (d *Driver) apply(network string, ev api.EndpointEvent) {
	d.mu.Lock()
	ns, ok := d.st.Networks[network]
	if !ok {
		d.mu.Unlock()
		return
	}
	switch ev.Type {
	case api.EventSnapshot:
		ns.Remote = make(map[string]api.Endpoint, len(ev.Endpoints))
		for _, ep := range ev.Endpoints {
			ns.Remote[remoteKey(ep.Host, ep.Container)] = ep
		}
	case api.EventPut:
		if ev.Endpoint != nil {
			if ns.Remote == nil {
				ns.Remote = map[string]api.Endpoint{}
			}
			ns.Remote[remoteKey(ev.Endpoint.Host, ev.Endpoint.Container)] = *ev.Endpoint
		}
	case api.EventDelete:
		if ev.Endpoint != nil {
			delete(ns.Remote, remoteKey(ev.Endpoint.Host, ev.Endpoint.Container))
		}
	}
	if ev.Revision > ns.Revision {
		ns.Revision = ev.Revision
	}
	changed := ev.Type != api.EventProgress
	d.mu.Unlock()
	if changed {
		d.dp.Kick() // program the kernel first; the watch replays from the saved revision after a crash
		_ = d.persist()
	}
}

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

// desired computes the whole overlay state this host should have. It must stay cheap: the data plane
// calls it on every reconcile.
func (d *Driver) desired() vxlan.State {
	dead := map[string]bool{}
	for _, m := range d.cfg.Members.Members() {
		if !m.Alive {
			dead[m.Name] = true
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var s vxlan.State
	names := make([]string, 0, len(d.st.Networks))
	for name := range d.st.Networks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ns := d.st.Networks[name]
		if len(ns.Local) == 0 {
			continue
		}
		subnet, err := netip.ParsePrefix(ns.Network.Subnet)
		if err != nil {
			d.log.Warn("network has no valid subnet; skipped", "network", name, "subnet", ns.Network.Subnet)
			continue
		}
		gw, _ := netip.ParseAddr(ns.Network.Gateway)
		st := vxlan.NetworkState{Network: vxlan.Network{
			Name: name, VNI: ns.Network.VNI, Subnet: subnet, Gateway: gw, MTU: ns.Network.MTU, Internal: ns.Network.Internal,
		}}
		for _, l := range ns.Local {
			ip, err := netip.ParseAddr(l.IP)
			if err != nil {
				continue
			}
			st.Endpoints = append(st.Endpoints, vxlan.Endpoint{ContainerID: l.Container, NetNSPath: l.Netns, IfName: l.IfName, IP: ip})
		}
		slices.SortFunc(st.Endpoints, func(a, b vxlan.Endpoint) int { return a.IP.Compare(b.IP) })
		vteps := map[netip.Addr]bool{}
		for _, ep := range ns.Remote {
			if ep.Host == d.cfg.Host || dead[ep.Host] {
				continue
			}
			ip, err := netip.ParseAddr(ep.IP)
			if err != nil {
				continue
			}
			vtepStr := ep.VTEP
			if h, ok := d.st.Hosts[ep.Host]; ok && h.Address != "" {
				vtepStr = h.Address
			}
			vtep, err := netip.ParseAddr(vtepStr)
			if err != nil || vtep == d.cfg.Address {
				continue
			}
			st.Peers = append(st.Peers, vxlan.Peer{IP: ip, VTEP: vtep})
			vteps[vtep] = true
		}
		slices.SortFunc(st.Peers, func(a, b vxlan.Peer) int { return a.IP.Compare(b.IP) })
		for v := range vteps {
			st.VTEPs = append(st.VTEPs, v)
		}
		slices.SortFunc(st.VTEPs, func(a, b netip.Addr) int { return a.Compare(b) })
		s.Networks = append(s.Networks, st)
	}
	return s
}
