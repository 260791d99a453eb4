package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/errdefs"
)

// Config configures a Controller.
type Config struct {
	// Store is the etcd-backed state. Required.
	Store *store.Store
	// AdminToken authorises everything (ovctl). Required.
	AdminToken string
	// JoinToken is the first join token (it lets an agent register a new host): stored in etcd, with
	// JoinTokenTTL, when etcd has none yet. From then on etcd's is the join token (ovctl node
	// join-token shows and rotates it), and this one counts no more. Required.
	JoinToken string
	// JoinTokenTTL is how long a join token works (the first one, and a rotated one given no TTL of
	// its own); 0: never expires. Default 24h.
	JoinTokenTTL time.Duration
	// OnJoinToken, if set, is called with the join token whenever this controller learns that it
	// changed (at start and after rotations by any controller); cmd/ovcontroller keeps the token file
	// current with it. It must return quickly.
	OnJoinToken func(token string)
	// Pools are the defaults for networks created without subnet or VNI. Default: 10.128.0.0/9 carved
	// into /24 subnets, VNIs 4096-16777215.
	Pools store.Pools
	// HostDeadAfter: a host whose last heartbeat is older is reported dead. It is the TTL of the etcd
	// lease that keeps the host's alive key (store/alive.go), so whole seconds. Default 30s.
	HostDeadAfter time.Duration
	// WatchHeartbeat is how often an idle endpoint watch stream carries a progress event; at the same
	// pace the stream checks that its network still exists and ends when it does not (the client's
	// reconnect then gets 404). Default 15s.
	WatchHeartbeat time.Duration
	// MaxWatchesPerToken caps the endpoint watch streams one token (one host, the admin, the join
	// token) may hold open at once; one more is answered 429. An agent holds one for all the overlay
	// networks it serves (an agent older than the host stream: one per network). Default 64.
	MaxWatchesPerToken int
	// Log receives the controller's messages. Default slog.Default().
	Log *slog.Logger
	// Metrics, if set, receives the controller's Prometheus metrics (metrics.go, docs/metrics.md) and
	// Store's etcd request metrics; give each controller its own registry. Nil: no metrics.
	Metrics prometheus.Registerer
}

// DefaultConfig returns a Config with every default set and no store or tokens.
func DefaultConfig() Config {
	return Config{
		Pools: store.Pools{
			Subnet:     netip.MustParsePrefix("10.128.0.0/9"), // 32768 /24 networks, clear of 10.0.0.0/9 home/office use
			SubnetBits: 24,                                    // 253 containers per network unless it gives its own subnet
			VNIMin:     4096,                                  // below: left for hand-picked VNIs
			VNIMax:     1<<24 - 1,                             // the largest VXLAN VNI
		},
		HostDeadAfter:      30 * time.Second,
		WatchHeartbeat:     15 * time.Second,
		MaxWatchesPerToken: 64,
		JoinTokenTTL:       24 * time.Hour, // as kubeadm's bootstrap tokens: long enough to add hosts today
		Log:                slog.Default(),
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return fmt.Errorf("controller: no store: %w", errdefs.ErrInvalidArgument)
	case len(c.AdminToken) < 16:
		return fmt.Errorf("controller: admin token is missing or shorter than 16 characters: %w", errdefs.ErrInvalidArgument)
	case len(c.JoinToken) < 16:
		return fmt.Errorf("controller: join token is missing or shorter than 16 characters: %w", errdefs.ErrInvalidArgument)
	case c.AdminToken == c.JoinToken:
		return fmt.Errorf("controller: the admin and join tokens must differ: %w", errdefs.ErrInvalidArgument)
	case !c.Pools.Subnet.Addr().Is4() || c.Pools.SubnetBits < c.Pools.Subnet.Bits() || c.Pools.SubnetBits > 30:
		return fmt.Errorf("controller: subnet pool %s cannot be carved into /%d networks: %w", c.Pools.Subnet, c.Pools.SubnetBits, errdefs.ErrInvalidArgument)
	case c.Pools.VNIMin == 0 || c.Pools.VNIMin > c.Pools.VNIMax || c.Pools.VNIMax > 1<<24-1:
		return fmt.Errorf("controller: VNI pool %d-%d is not within 1-16777215: %w", c.Pools.VNIMin, c.Pools.VNIMax, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Controller serves the cluster API.
type Controller struct {
	cfg   Config
	st    *store.Store
	log   *slog.Logger
	cache *cache

	stopOnce    sync.Once
	stopWatches chan struct{} // closed by CloseWatches
	watches     watchCount
	live        liveness
	batches     batchers // group commit of concurrent allocations (batch.go)
	metrics     *metrics // nil: no metrics (metrics.go)
	hub         *hub     // the endpoint watch shared by every stream (watchhub.go)
}

// watchCount counts the open watch streams of each token.
type watchCount struct {
	mu sync.Mutex
	n  map[principal]int
}

// acquire counts one more stream for p, or refuses it when p holds max already; release uncounts it.
func (wc *watchCount) acquire(p principal, max int) (release func(), err error) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	if wc.n == nil {
		wc.n = map[principal]int{}
	}
	if wc.n[p] >= max {
		return nil, tooManyWatches{fmt.Errorf("this token already holds %d watch streams on this controller, the most it may; close some (an agent needs one, or one per overlay network it serves when it is older than the host watch stream): %w", max, errdefs.ErrExhausted)}
	}
	wc.n[p]++
	return func() {
		wc.mu.Lock()
		defer wc.mu.Unlock()
		if wc.n[p]--; wc.n[p] <= 0 {
			delete(wc.n, p)
		}
	}, nil
}

// CloseWatches ends every open watch stream (their clients reconnect, to another controller if need
// be); give it to http.Server.RegisterOnShutdown so that a graceful shutdown does not wait for them.
func (c *Controller) CloseWatches() {
	c.stopOnce.Do(func() { close(c.stopWatches) })
}

// New checks cfg and returns a Controller; call Run to keep its cache current.
func New(cfg Config) (*Controller, error) {
	d := DefaultConfig()
	if !cfg.Pools.Subnet.IsValid() {
		cfg.Pools = d.Pools
	}
	if cfg.HostDeadAfter == 0 {
		cfg.HostDeadAfter = d.HostDeadAfter
	}
	if cfg.WatchHeartbeat == 0 {
		cfg.WatchHeartbeat = d.WatchHeartbeat
	}
	if cfg.Log == nil {
		cfg.Log = d.Log
	}
	if cfg.MaxWatchesPerToken == 0 {
		cfg.MaxWatchesPerToken = d.MaxWatchesPerToken
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log.With("component", "controller")
	c := &Controller{cfg: cfg, st: cfg.Store, log: log, cache: newCache(log), stopWatches: make(chan struct{}), hub: newHub()}
	var err error
	if c.metrics, err = newMetrics(cfg.Metrics, c); err != nil {
		return nil, fmt.Errorf("controller metrics: %w", err)
	} else if c.metrics != nil {
		cfg.Store.SetObserver(c.metrics)
	}
	if cfg.OnJoinToken != nil {
		c.cache.onSecret = func(name string, s store.Secret) {
			if j, err := decodeJoin(s); name == joinSecret && err == nil {
				cfg.OnJoinToken(j.Token)
			}
		}
	}
	return c, nil
}

// Run keeps the cache current (list, then watch, re-list after compaction; one list-watch per kind
// of key it needs) until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(cachedKinds)+1)
	for _, k := range cachedKinds {
		go func() {
			errs <- c.st.Watch(ctx, k, kindWatcher{c: c.cache, kind: k})
		}()
	}
	go func() { errs <- c.hub.run(ctx, c.st) }()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); c.ensureSecrets(ctx) }()
	var first error
	for range len(cachedKinds) + 1 {
		if err := <-errs; err != nil && first == nil && ctx.Err() == nil {
			first = err
			cancel()
		}
	}
	return first
}

// Ready tells whether the controller's cache holds its first view of every kind it watches and the
// cluster's secrets: from then on a request with an invalid token costs no etcd read.
func (c *Controller) Ready() bool {
	for _, k := range cachedKinds {
		if !c.cache.hasSynced(k) {
			return false
		}
	}
	for _, n := range []string{gossipSecret, joinSecret, hostKeySecret} {
		if _, ok := c.cache.secret(n); !ok {
			return false
		}
	}
	return true
}

// ensureSecrets creates the secrets the cluster needs (the gossip keyring) when they do not exist
// yet, retrying while etcd is unavailable, until it succeeds or ctx ends.
func (c *Controller) ensureSecrets(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		_, err := c.GossipKeyring(ctx)
		if err == nil {
			_, err = c.joinToken(ctx)
		}
		if err == nil {
			_, err = c.hostKey(ctx)
		}
		if err == nil {
			return
		}
		c.log.Debug("creating the cluster's secrets failed; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// network returns the network from the cache, or from etcd when the cache does not have it (yet).
func (c *Controller) network(ctx context.Context, name string) (store.Network, error) {
	if n, ok := c.cache.network(name); ok {
		return n, nil
	}
	return c.st.GetNetwork(ctx, name)
}

func (c *Controller) host(ctx context.Context, name string) (store.Host, error) {
	if h, ok := c.cache.host(name); ok {
		return h, nil
	}
	return c.st.GetHost(ctx, name)
}

// allocateAddr is Allocate (metrics.go), uncounted.
func (c *Controller) allocateAddr(ctx context.Context, ep api.Endpoint) (api.Endpoint, bool, error) {
	if err := ep.Validate(); err != nil {
		return api.Endpoint{}, false, err
	}
	n, err := c.network(ctx, ep.Network)
	if err != nil {
		return api.Endpoint{}, false, err
	}
	h, err := c.host(ctx, ep.Host)
	if err != nil {
		return api.Endpoint{}, false, err
	}
	if ep.IP != "" {
		want, _ := netip.ParseAddr(ep.IP)
		for attempt := 0; ; attempt++ {
			if err := n.Range.Check(want); err != nil {
				return api.Endpoint{}, false, fmt.Errorf("network %q: %w", n.Name, err)
			}
			out, created, err := c.st.Allocate(ctx, n, h, ep, want, false)
			if errors.Is(err, store.ErrStale) && attempt < 3 {
				c.metrics.retry("stale")
				if n, h, err = c.refresh(ctx, n.Name, h.Name); err != nil {
					return api.Endpoint{}, false, err
				}
				continue
			}
			if err != nil {
				return api.Endpoint{}, false, err
			}
			if !created && out.IP != ep.IP {
				return api.Endpoint{}, false, fmt.Errorf("network %q: container %s on host %s already holds %s, not %s; release it first: %w", n.Name, ep.Container, h.Name, out.IP, ep.IP, errdefs.ErrConflict)
			}
			return out, created, nil
		}
	}
	for attempt := 0; attempt < 256; attempt++ {
		ip, prev, err := c.cache.pick(n)
		if err != nil {
			return api.Endpoint{}, false, fmt.Errorf("network %q: %w", n.Name, err)
		}
		if attempt == 0 {
			out, ok, alone := c.allocateGrouped(n, h, ep, ip)
			if ok {
				c.cache.settle(n.Name, ip, out.Revision, true)
				return out, true, nil
			}
			if alone {
				defer func() { go c.doneAlone(n.Name) }()
			}
		}
		out, created, err := c.st.Allocate(ctx, n, h, ep, ip, true)
		var taken *store.TakenError
		switch {
		case err == nil && created:
			c.cache.settle(n.Name, ip, out.Revision, true)
			return out, true, nil
		case err == nil: // the owner already held an address; the candidate stays free
			c.cache.unpick(n.Name, ip, prev)
			return out, false, nil
		case errors.As(err, &taken):
			c.cache.settle(n.Name, ip, taken.Holder.Revision, false)
			c.metrics.retry("taken")
			continue
		case errors.Is(err, store.ErrStale): // the candidate was not used: pick it again
			c.cache.unpick(n.Name, ip, prev)
			c.metrics.retry("stale")
			if n, h, err = c.refresh(ctx, n.Name, h.Name); err != nil {
				return api.Endpoint{}, false, err
			}
			continue
		default:
			c.cache.unpick(n.Name, ip, prev)
			return api.Endpoint{}, false, err
		}
	}
	return api.Endpoint{}, false, fmt.Errorf("network %q: no free address found after 256 tries against other controllers; retry: %w", n.Name, errdefs.ErrConflict)
}

// refresh re-reads a network and a host from etcd (after the cached ones turned out stale).
func (c *Controller) refresh(ctx context.Context, network, host string) (store.Network, store.Host, error) {
	n, err := c.st.GetNetwork(ctx, network)
	if err != nil {
		return store.Network{}, store.Host{}, err
	}
	h, err := c.st.GetHost(ctx, host)
	if err != nil {
		return store.Network{}, store.Host{}, err
	}
	return n, h, nil
}
