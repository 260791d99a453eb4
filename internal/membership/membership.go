package membership

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
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
	// SuspicionMult below, a dead host is declared dead about 2 s after it stops answering.
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for a probe's ack before asking others. Default 250ms (LAN).
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspect node has to refute before it is declared dead
	// (SuspicionMult * ProbeInterval * max(1, log10(N))). Default 2: a host is called dead about 2 s
	// after it stops answering, and a wrong call costs nothing while its kernel answers (Dataplane).
	SuspicionMult int
	// RejoinInterval is how often seeds that are not alive members are joined again, which heals a
	// partition and a restart of every other host. Default 2s.
	RejoinInterval time.Duration
	// VerifyTimeout is how long the direct probe of a host gossip claims is dead waits for the host's
	// answer before the claim is believed. Default 100ms: an underlay's round trip is well under a
	// millisecond, and this wait adds to the time a really dead host's entries stay.
	VerifyTimeout time.Duration
	// Keys is the gossip keyring (AES-256 keys of 32 bytes, Keys[0] the primary): every message is
	// encrypted and authenticated with it, and a message that does not decrypt is dropped. Gossip does
	// not start without one (Run waits for SetKeyring). Default none: the controller hands it out.
	Keys [][]byte
	// KeyGrace is how long a new primary key is only accepted before this host sends with it, so that
	// every host has fetched it before anyone needs it (a rotation loses no message). Default 10s:
	// agents refetch the keyring within a heartbeat (2s).
	KeyGrace time.Duration
	// Dataplane asks a host's kernel, not its agent, whether the host is still there (liveness.go):
	// when gossip calls a host dead and its agent does not answer a direct probe either, the host's
	// entries stay while its kernel answers (the agent is restarting or stopped for an upgrade, its
	// containers still forward) and are withdrawn once it has been silent for DataplaneGrace (the host
	// is down or cut off). Default nil: no such probe, a silent agent's host is withdrawn at once.
	Dataplane Prober
	// DataplaneInterval is how often the kernel of a host whose agent is silent is probed, and how long
	// each probe waits for its answer. Default 250ms.
	DataplaneInterval time.Duration
	// DataplaneGrace is how long the kernel of a host whose agent is silent may leave every probe
	// unanswered before the host's entries are withdrawn. Default 750ms (three probes): with gossip's
	// 2-3 s to call the host dead, a host that is really gone is withdrawn within 4 s; a live host whose
	// probes were all lost gets its entries back at its next answer.
	DataplaneGrace time.Duration
	// Log receives membership events; memberlist's own chatter goes to it at debug level.
	Log *slog.Logger
}

// DefaultConfig returns the defaults for a host named name gossiping on addr:7946.
func DefaultConfig(name string, addr netip.Addr) Config {
	return Config{
		Name:              name,
		BindAddr:          addr,
		Port:              7946,
		VTEP:              addr,
		ProbeInterval:     500 * time.Millisecond,
		ProbeTimeout:      250 * time.Millisecond,
		SuspicionMult:     3,
		RejoinInterval:    2 * time.Second,
		KeyGrace:          10 * time.Second,
		VerifyTimeout:     100 * time.Millisecond,
		Log:               slog.New(slog.NewTextHandler(io.Discard, nil)),
		DataplaneInterval: 250 * time.Millisecond,
		DataplaneGrace:    750 * time.Millisecond,
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
	case c.VerifyTimeout <= 0:
		return fmt.Errorf("membership %q: verify timeout %v must be positive: %w", c.Name, c.VerifyTimeout, errdefs.ErrInvalidArgument)
	case c.Dataplane != nil && (c.DataplaneInterval <= 0 || c.DataplaneGrace <= 0):
		return fmt.Errorf("membership %q: data plane probe interval %v and grace %v must be positive: %w", c.Name, c.DataplaneInterval, c.DataplaneGrace, errdefs.ErrInvalidArgument)
	case c.KeyGrace < 0:
		return fmt.Errorf("membership %q: negative key grace %v: %w", c.Name, c.KeyGrace, errdefs.ErrInvalidArgument)
	case c.Log == nil:
		return fmt.Errorf("membership %q: no logger: %w", c.Name, errdefs.ErrInvalidArgument)
	}
	if len(c.Keys) > 0 {
		if err := validKeys(c.Keys); err != nil {
			return fmt.Errorf("membership %q: %w", c.Name, err)
		}
	}
	return nil
}

// validKeys checks a keyring: at least one key, every key 32 bytes (AES-256).
func validKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return fmt.Errorf("the gossip keyring is empty; the controller hands out the cluster's keyring: %w", errdefs.ErrInvalidArgument)
	}
	for i, k := range keys {
		if len(k) != 32 {
			return fmt.Errorf("gossip key %d is %d bytes, want 32 (AES-256); rotate the keyring with ovctl: %w", i, len(k), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// Member is one host as gossip sees it.
type Member struct {
	Name string         `json:"name"`
	Addr netip.AddrPort `json:"addr"` // gossip address
	VTEP netip.Addr     `json:"vtep"`
	// Alive is false only when gossip says the host is dead (or left), the host does not answer a
	// direct probe from this host, and its kernel has not answered a data plane probe for
	// Config.DataplaneGrace: a claim of death alone (from a rogue member) withdraws nothing, and
	// neither does an agent that stopped while its host still forwards. Alive is what the host's
	// forwarding entries follow.
	Alive bool `json:"alive"`
	// Agent is false when gossip says the host is dead and its agent does not answer a direct probe:
	// the agent is stopped (Alive may stay true: see liveness.go).
	Agent bool      `json:"agent"`
	Since time.Time `json:"since"` // when Alive last changed
}

// Host is a registered host of the cluster: its name and gossip address. Only these take part in
// gossip (see SetHosts).
type Host struct {
	Name string
	Addr netip.AddrPort
}

// meta is what a host tells the others about itself (memberlist node metadata, at most 512 bytes).
type meta struct {
	VTEP string `json:"vtep"`
}

// entry is a member and what gossip last said about it.
type entry struct {
	Member
	gossipDead bool      // memberlist says dead or left; Alive stays true until a direct probe fails
	probing    bool      // a direct probe is under way
	warned     time.Time // when a refuted dead claim was last logged (once a minute at most)
	deadSince  time.Time // when gossip last called the member dead
	kernelSeen time.Time // when the host's kernel last answered a data plane probe while Agent is false
}

// Membership tracks the liveness of the cluster's hosts.
type Membership struct {
	cfg       Config
	log       *slog.Logger
	changes   chan struct{}
	rejoinNow chan struct{} // SetHosts learned new seeds
	keysSet   chan struct{} // SetKeyring gave the first keyring
	verify    chan struct{} // a member was claimed dead: probe it

	mu      sync.Mutex
	members map[string]*entry
	hosts   map[string]netip.AddrPort // registered hosts; nil until SetHosts
	seeds   []string
	keys    [][]byte
	ring    *memberlist.Keyring
	list    *memberlist.Memberlist
	probes  map[uint64]chan struct{} // direct probes waiting for their answer, by nonce

	// unsafe turns protections off, for the tests that show each protection is what stops its attack.
	unsafe struct {
		clearText       bool // gossip without a keyring
		trustDeadClaims bool // act on a dead claim without a direct probe
		noDataplane     bool // withdraw a host whose agent is silent without asking its kernel
		anyMember       bool // accept members that are not registered hosts
	}
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
		keysSet:   make(chan struct{}, 1),
		verify:    make(chan struct{}, 1),
		members:   map[string]*entry{},
		probes:    map[uint64]chan struct{}{},
		keys:      cfg.Keys,
	}, nil
}

// Changes is signalled (without blocking, coalesced) whenever a member joins, dies, leaves or changes,
// and when a node holding the key that is not a registered host (at its address) was refused: the host
// list may be stale (a host that just registered), so the caller should refresh it (SetHosts), after
// which the node is joined at once.
func (m *Membership) Changes() <-chan struct{} { return m.changes }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (m *Membership) kick() { signal(m.changes) }

// SetHosts gives the cluster's registered hosts (from the controller). They are the gossip seeds: the
// run loop joins those that are not alive members, at once when the list changed and then every
// RejoinInterval. They are also the only members accepted: a node whose name is not registered, or
// that gossips from another address than its host's, is refused (its alive messages are ignored) and
// removed from the member table.
func (m *Membership) SetHosts(hosts []Host) {
	seeds := make([]string, 0, len(hosts))
	allowed := make(map[string]netip.AddrPort, len(hosts))
	for _, h := range hosts {
		allowed[h.Name] = h.Addr
		if h.Name != m.cfg.Name {
			seeds = append(seeds, h.Addr.String())
		}
	}
	slices.Sort(seeds)
	m.mu.Lock()
	changed := !slices.Equal(m.seeds, seeds)
	m.seeds = seeds
	m.hosts = allowed
	pruned := false
	for name, e := range m.members {
		if err := m.allowedLocked(name, e.Addr); err != nil {
			m.log.Warn("member removed: not a registered host", "host", name, "addr", e.Addr, "reason", err)
			delete(m.members, name)
			pruned = true
		}
	}
	m.mu.Unlock()
	if pruned {
		m.kick()
	}
	if changed {
		signal(m.rejoinNow)
	}
}

// allowedLocked says why a node may not be a member (nil: it may); m.mu is held.
func (m *Membership) allowedLocked(name string, addr netip.AddrPort) error {
	if name == m.cfg.Name || m.unsafe.anyMember {
		return nil
	}
	want, ok := m.hosts[name]
	switch {
	case !ok:
		return fmt.Errorf("%q is not a registered host of the cluster", name)
	case want != addr:
		return fmt.Errorf("host %q is registered at %s, not %s", name, want, addr)
	}
	return nil
}

// SetKeyring gives the cluster's gossip keyring (Keys[0] the primary). Before gossip starts it is the
// keyring gossip starts with. While it runs, new keys are accepted at once, removed keys at once, and
// a new primary is used for sending after Config.KeyGrace (at once if the current one was removed).
func (m *Membership) SetKeyring(keys [][]byte) error {
	if err := validKeys(keys); err != nil {
		return fmt.Errorf("membership %q: %w", m.cfg.Name, err)
	}
	keys = slices.Clone(keys)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = keys
	if m.ring == nil {
		signal(m.keysSet)
		return nil
	}
	for _, k := range keys {
		if err := m.ring.AddKey(k); err != nil {
			return fmt.Errorf("membership %q: install a gossip key: %w", m.cfg.Name, err)
		}
	}
	primary := keys[0]
	if cur := m.ring.GetPrimaryKey(); !bytes.Equal(cur, primary) {
		if hasKey(keys, cur) {
			time.AfterFunc(m.cfg.KeyGrace, func() { m.usePrimary(primary) })
		} else if err := m.ring.UseKey(primary); err != nil {
			return fmt.Errorf("membership %q: use the new gossip key: %w", m.cfg.Name, err)
		}
	}
	m.removeOldKeysLocked()
	return nil
}

// usePrimary sends with key from now on, if it is still the keyring's primary.
func (m *Membership) usePrimary(key []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.keys) == 0 || !bytes.Equal(m.keys[0], key) {
		return
	}
	if err := m.ring.UseKey(key); err != nil {
		m.log.Error("use the new gossip key", "err", err)
		return
	}
	m.log.Info("gossip now sends with the new primary key")
	m.removeOldKeysLocked()
}

// removeOldKeysLocked removes the installed keys that are no longer in the keyring (never the key in
// use); m.mu is held.
func (m *Membership) removeOldKeysLocked() {
	cur := m.ring.GetPrimaryKey()
	for _, k := range m.ring.GetKeys() {
		if !hasKey(m.keys, k) && !bytes.Equal(k, cur) {
			_ = m.ring.RemoveKey(k)
		}
	}
}

func hasKey(keys [][]byte, k []byte) bool {
	return slices.ContainsFunc(keys, func(x []byte) bool { return bytes.Equal(x, k) })
}

// Members returns every host seen so far, sorted by name, this host included.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, e := range m.members {
		out = append(out, e.Member)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Alive reports whether the named host is an alive member.
func (m *Membership) Alive(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.members[name]
	return ok && e.Alive
}

// Addr returns the gossip address this member listens on.
func (m *Membership) Addr() string {
	m.mu.Lock()
	list := m.list
	m.mu.Unlock()
	if list == nil {
		return ""
	}
	// Never call memberlist with m.mu held: it calls back (record, NotifyAlive) holding its own lock.
	n := list.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// errNoKeyring is Start's answer before a keyring is known.
var errNoKeyring = errors.New("no gossip keyring yet: gossip never runs in clear; the agent gets the keyring from the controller once registered")

// Start creates the gossip endpoint; it returns once the listener is bound, so Addr works. It needs
// a keyring (Config.Keys or SetKeyring).
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
	mc.Alive = (*aliveFilter)(m)
	mc.Logger = slog.NewLogLogger(m.log.Handler(), slog.LevelDebug)
	m.mu.Lock()
	keys, clear := m.keys, m.unsafe.clearText
	m.mu.Unlock()
	var ring *memberlist.Keyring
	if !clear {
		if len(keys) == 0 {
			return fmt.Errorf("membership %q: %w: %w", m.cfg.Name, errNoKeyring, errdefs.ErrUnavailable)
		}
		var err error
		if ring, err = memberlist.NewKeyring(keys, keys[0]); err != nil {
			return fmt.Errorf("membership %q: gossip keyring: %w", m.cfg.Name, err)
		}
		mc.Keyring = ring
		mc.GossipVerifyIncoming = true // drop every message that does not decrypt with a key of the ring
		mc.GossipVerifyOutgoing = true
	}
	list, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("membership: start gossip on %s:%d: %w (is another agent using the port?)", m.cfg.BindAddr, m.cfg.Port, err)
	}
	m.mu.Lock()
	m.list, m.ring = list, ring
	m.mu.Unlock()
	if !clear {
		m.mu.Lock()
		keys = m.keys
		m.mu.Unlock()
		_ = m.SetKeyring(keys) // a keyring given between the read above and now
	}
	return nil
}

// Run gossips until ctx is done, joining seeds that are not alive members every RejoinInterval and
// probing members that gossip claims are dead. It waits for a keyring first, then calls Start if it
// has not been called. It does not leave the cluster on return (see the package doc).
func (m *Membership) Run(ctx context.Context) error {
	if err := m.waitForKeyring(ctx); err != nil {
		return nil
	}
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
	var wg sync.WaitGroup
	defer wg.Wait()
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); m.verifyLoop(vctx, &wg) }()
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

// waitForKeyring returns once a keyring is known (or gossip may run in clear), or ctx's error.
func (m *Membership) waitForKeyring(ctx context.Context) error {
	for logged := false; ; logged = true {
		m.mu.Lock()
		ready := len(m.keys) > 0 || m.unsafe.clearText || m.list != nil
		m.mu.Unlock()
		if ready {
			return nil
		}
		if !logged {
			m.log.Info("gossip waits for the cluster's gossip keyring (the controller hands it to registered hosts)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.keysSet:
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
	for _, e := range m.members {
		if e.Alive && !e.gossipDead {
			alive[e.Addr.String()] = true
		}
	}
	seeds := m.seeds
	m.mu.Unlock()
	if list == nil {
		return
	}
	self := m.Addr()
	var todo []string
	for _, s := range seeds {
		if s != self && !alive[s] {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return
	}
	n, err := list.Join(todo)
	if err != nil && n == 0 {
		m.log.Debug("join seeds", "seeds", todo, "err", err)
	}
}

// record updates the member table from a memberlist node; it never blocks. memberlist does not keep
// Node.State current in its callbacks, so the caller says whether gossip calls the node alive: joins
// and updates do, leaves (dead or left) do not. A node gossip calls dead stays Alive until a direct
// probe (verifyLoop) fails too.
func (m *Membership) record(n *memberlist.Node, alive bool) {
	addr, _ := netip.AddrFromSlice(n.Addr)
	ap := netip.AddrPortFrom(addr.Unmap(), n.Port)
	var md meta
	vtep := netip.Addr{}
	if json.Unmarshal(n.Meta, &md) == nil {
		vtep, _ = netip.ParseAddr(md.VTEP)
	}
	m.mu.Lock()
	if err := m.allowedLocked(n.Name, ap); err != nil {
		_, had := m.members[n.Name]
		delete(m.members, n.Name)
		m.mu.Unlock()
		if had {
			m.kick()
		}
		return
	}
	e, seen := m.members[n.Name]
	if !seen {
		e = &entry{Member: Member{Name: n.Name}}
		m.members[n.Name] = e
	}
	old := e.Member
	e.Addr = ap
	if vtep.IsValid() {
		e.VTEP = vtep
	}
	if alive {
		e.gossipDead = false
	} else if !e.gossipDead {
		e.gossipDead, e.deadSince = true, time.Now()
	}
	switch {
	case alive:
		e.Alive, e.Agent = true, true
	case !seen || m.unsafe.trustDeadClaims || n.Name == m.cfg.Name:
		e.Alive, e.Agent = false, false
	default:
		signal(m.verify) // Alive stays as it is until a direct probe fails
	}
	if !seen || old.Alive != e.Alive {
		e.Since = time.Now()
	}
	changed := !seen || old != e.Member
	mb := e.Member
	m.mu.Unlock()
	if changed {
		m.logChange(mb)
		m.kick()
	}
}

func (m *Membership) logChange(mb Member) {
	if mb.Name == m.cfg.Name {
		return
	}
	state := "dead"
	if mb.Alive {
		state = "alive"
	}
	m.log.Info("member changed", "host", mb.Name, "state", state, "vtep", mb.VTEP)
}

type events Membership

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Membership)(e).record(n, true) }
func (e *events) NotifyLeave(n *memberlist.Node)  { (*Membership)(e).record(n, false) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Membership)(e).record(n, true) }

// aliveFilter refuses alive messages about nodes that are not registered hosts at their registered
// address, so they never enter memberlist's table: no growth without bound, no unknown member.
type aliveFilter Membership

func (a *aliveFilter) NotifyAlive(n *memberlist.Node) error {
	m := (*Membership)(a)
	addr, _ := netip.AddrFromSlice(n.Addr)
	m.mu.Lock()
	err := m.allowedLocked(n.Name, netip.AddrPortFrom(addr.Unmap(), n.Port))
	m.mu.Unlock()
	if err != nil {
		m.kick() // the host list may be stale: a host that registered a moment ago
	}
	return err
}

type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(meta{VTEP: d.cfg.VTEP.String()})
	if len(b) > limit {
		return nil
	}
	return b
}
func (d *delegate) NotifyMsg(b []byte)                         { (*Membership)(d).handleProbe(b) }
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}
