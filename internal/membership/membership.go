package membership

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovnet/ov/internal/errdefs"
)

// Config configures a Membership. Build it from DefaultConfig.
type Config struct {
	// Name is this host's name, unique in the cluster (the agent's host name).
	Name string
	// BindAddr is the address gossip listens on (the host's underlay address).
	BindAddr netip.Addr
	// Port is the UDP and TCP gossip port. A host keeps its port across restarts: memberlist ties a
	// name to an address, and a name that comes back on another address is refused for a while.
	Port int
	// VTEP is the underlay address other hosts send VXLAN traffic to; usually BindAddr.
	VTEP netip.Addr
	// ProbeInterval is how often a random member is probed. Default 500ms: with ProbeTimeout and
	// SuspicionMult below, a dead host is declared dead about 2-3 s after it stops answering.
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for a probe's ack before asking others. Default 250ms (LAN).
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspect node has to refute before it is declared dead
	// (SuspicionMult * ProbeInterval * max(1, log10(N))). Default 3.
	SuspicionMult int
	// RejoinInterval is how often seeds that are not alive members are joined again, which heals a
	// partition and a restart of every other host. Default 2s.
	RejoinInterval time.Duration
	// Log receives membership events; memberlist's own chatter goes to it at debug level.
	Log *slog.Logger
}

// DefaultConfig returns the defaults for a host named name gossiping on addr:7946.
func DefaultConfig(name string, addr netip.Addr) Config {
	return Config{
		Name:           name,
		BindAddr:       addr,
		Port:           7946,
		VTEP:           addr,
		ProbeInterval:  500 * time.Millisecond,
		ProbeTimeout:   250 * time.Millisecond,
		SuspicionMult:  3,
		RejoinInterval: 2 * time.Second,
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("membership: no host name: %w", errdefs.ErrInvalidArgument)
	case !c.BindAddr.IsValid():
		return fmt.Errorf("membership %q: no bind address; set the host's underlay address: %w", c.Name, errdefs.ErrInvalidArgument)
	case !c.VTEP.IsValid():
		return fmt.Errorf("membership %q: no VTEP address: %w", c.Name, errdefs.ErrInvalidArgument)
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("membership %q: port %d out of range: %w", c.Name, c.Port, errdefs.ErrInvalidArgument)
	case c.ProbeInterval <= 0 || c.ProbeTimeout <= 0 || c.SuspicionMult < 1 || c.RejoinInterval <= 0:
		return fmt.Errorf("membership %q: probe interval, probe timeout, suspicion multiplier and rejoin interval must be positive: %w", c.Name, errdefs.ErrInvalidArgument)
	case c.Log == nil:
		return fmt.Errorf("membership %q: no logger: %w", c.Name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Member is one host as gossip sees it.
type Member struct {
	Name  string         `json:"name"`
	Addr  netip.AddrPort `json:"addr"` // gossip address
	VTEP  netip.Addr     `json:"vtep"`
	Alive bool           `json:"alive"`
	Since time.Time      `json:"since"` // when Alive last changed
}

// meta is what a host tells the others about itself (memberlist node metadata, at most 512 bytes).
type meta struct {
	VTEP string `json:"vtep"`
}

// Membership tracks the liveness of the cluster's hosts.
type Membership struct {
	cfg       Config
	log       *slog.Logger
	changes   chan struct{}
	rejoinNow chan struct{} // SetSeeds learned new seeds

	mu      sync.Mutex
	members map[string]Member
	seeds   []string
	list    *memberlist.Memberlist
}

// New returns a Membership; Run starts gossip.
func New(cfg Config) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Membership{
		cfg:       cfg,
		log:       cfg.Log.With("component", "membership"),
		changes:   make(chan struct{}, 1),
		rejoinNow: make(chan struct{}, 1),
		members:   map[string]Member{},
	}, nil
}

// Changes is signalled (without blocking, coalesced) whenever a member joins, dies, leaves or changes.
func (m *Membership) Changes() <-chan struct{} { return m.changes }

func (m *Membership) kick() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// SetSeeds sets the gossip addresses ("ip:port") of other hosts to join; the run loop joins those that
// are not alive members, at once when the list changed and then every RejoinInterval.
func (m *Membership) SetSeeds(seeds []string) {
	seeds = slices.Clone(seeds)
	slices.Sort(seeds)
	m.mu.Lock()
	changed := !slices.Equal(m.seeds, seeds)
	m.seeds = seeds
	m.mu.Unlock()
	if changed {
		select {
		case m.rejoinNow <- struct{}{}:
		default:
		}
	}
}

// Members returns every host seen so far, sorted by name, this host included.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mb := range m.members {
		out = append(out, mb)
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Alive reports whether the named host is an alive member.
func (m *Membership) Alive(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.members[name].Alive
}

// Addr returns the gossip address this member listens on.
func (m *Membership) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.list == nil {
		return ""
	}
	n := m.list.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Start creates the gossip endpoint; it returns once the listener is bound, so Addr works.
func (m *Membership) Start() error {
	mc := memberlist.DefaultLANConfig()
	mc.Name = m.cfg.Name
	mc.BindAddr = m.cfg.BindAddr.String()
	mc.BindPort = m.cfg.Port
	mc.AdvertiseAddr = m.cfg.BindAddr.String()
	mc.AdvertisePort = m.cfg.Port
	mc.ProbeInterval = m.cfg.ProbeInterval
	mc.ProbeTimeout = m.cfg.ProbeTimeout
	mc.SuspicionMult = m.cfg.SuspicionMult
	mc.GossipInterval = 100 * time.Millisecond
	mc.PushPullInterval = 5 * time.Second // full state exchange: heals what a lost gossip message missed
	mc.DeadNodeReclaimTime = time.Second  // a host that restarts may come back at once under its name
	mc.Events = (*events)(m)
	mc.Delegate = (*delegate)(m)
	mc.Logger = slog.NewLogLogger(m.log.Handler(), slog.LevelDebug)
	list, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("membership: start gossip on %s:%d: %w (is another agent using the port?)", m.cfg.BindAddr, m.cfg.Port, err)
	}
	m.mu.Lock()
	m.list = list
	m.mu.Unlock()
	return nil
}

// Run gossips until ctx is done, joining seeds that are not alive members every RejoinInterval. It calls
// Start if it has not been called. It does not leave the cluster on return (see the package doc).
func (m *Membership) Run(ctx context.Context) error {
	m.mu.Lock()
	started := m.list != nil
	m.mu.Unlock()
	if !started {
		if err := m.Start(); err != nil {
			return err
		}
	}
	defer func() {
		m.mu.Lock()
		list := m.list
		m.mu.Unlock()
		_ = list.Shutdown()
	}()
	t := time.NewTicker(m.cfg.RejoinInterval)
	defer t.Stop()
	for {
		m.rejoin()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.rejoinNow:
		}
	}
}

// Leave announces that this host leaves the cluster for good (node removal), then stops gossip.
func (m *Membership) Leave(timeout time.Duration) error {
	m.mu.Lock()
	list := m.list
	m.mu.Unlock()
	if list == nil {
		return nil
	}
	return list.Leave(timeout)
}

func (m *Membership) rejoin() {
	m.mu.Lock()
	list := m.list
	alive := map[string]bool{}
	for _, mb := range m.members {
		if mb.Alive {
			alive[mb.Addr.String()] = true
		}
	}
	var todo []string
	self := ""
	if list != nil {
		n := list.LocalNode()
		self = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	}
	for _, s := range m.seeds {
		if s != self && !alive[s] {
			todo = append(todo, s)
		}
	}
	m.mu.Unlock()
	if list == nil || len(todo) == 0 {
		return
	}
	n, err := list.Join(todo)
	if err != nil && n == 0 {
		m.log.Debug("join seeds", "seeds", todo, "err", err)
	}
}

// record updates the member table from a memberlist node; it never blocks. memberlist does not keep
// Node.State current in its callbacks, so the caller says whether the node is alive: joins and updates
// are, leaves (dead or left) are not.
func (m *Membership) record(n *memberlist.Node, alive bool) {
	addr, _ := netip.AddrFromSlice(n.Addr)
	mb := Member{Name: n.Name, Addr: netip.AddrPortFrom(addr.Unmap(), n.Port), Alive: alive}
	var md meta
	if json.Unmarshal(n.Meta, &md) == nil {
		mb.VTEP, _ = netip.ParseAddr(md.VTEP)
	}
	m.mu.Lock()
	old, seen := m.members[n.Name]
	if !mb.VTEP.IsValid() && seen {
		mb.VTEP = old.VTEP
	}
	mb.Since = old.Since
	if !seen || old.Alive != mb.Alive {
		mb.Since = time.Now()
	}
	m.members[n.Name] = mb
	m.mu.Unlock()
	if !seen || old != mb {
		state := "dead"
		if mb.Alive {
			state = "alive"
		}
		if n.Name != m.cfg.Name {
			m.log.Info("member changed", "host", n.Name, "state", state, "vtep", mb.VTEP)
		}
		m.kick()
	}
}

type events Membership

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Membership)(e).record(n, true) }
func (e *events) NotifyLeave(n *memberlist.Node)  { (*Membership)(e).record(n, false) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Membership)(e).record(n, true) }

type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(meta{VTEP: d.cfg.VTEP.String()})
	if len(b) > limit {
		return nil
	}
	return b
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}
