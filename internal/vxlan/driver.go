package vxlan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
)

// Driver converges one host's kernel to the desired overlay State. It is safe for concurrent use;
// reconciles are serialised.
type Driver struct {
	cfg  Config
	log  *slog.Logger
	nl   netlink.Namespaces
	ipt  iptables.Client
	kick chan struct{}

	mu          sync.Mutex
	lastChanges int // kernel changes made by the last reconcile (for tests and logs)
	// The chains the last complete firewall pass left, and when. A reconcile Run does on a Kick skips
	// the iptables pass (one iptables exec per chain and jump: tens of milliseconds, on the path of
	// every new peer's neighbour and FDB entries) while the wanted chains are these and the pass is
	// younger than Resync; Reconcile and Run's periodic resync always do it.
	fwSpecs []iptables.Table
	fwAt    time.Time
	// The containers the last reconcile set up, to take the macvlan out of one that leaves a network
	// while it keeps running (its interface lives in its namespace, out of sight of the host's).
	attached map[endpointKey]endpointLoc
	// The gateways (by VNI) whose route_localnet a reconcile turned on (publish.go).
	localnetOn map[uint32]bool
	// What the last reconcile left out, since when; the problems that appeared, per network and in
	// all; and the Status it left. Under smu, not mu: Status does not wait for a reconcile.
	smu           sync.Mutex
	problems      map[Problem]time.Time
	detected      map[string]uint64
	detectedTotal uint64
	status        Status
	// The sanitized state the last reconcile converged to without error (valid when converged): a
	// reconcile of the same state that still changes something repairs drift (repair.go).
	converged   State
	convergedOK bool
	// What the last reconcile worked from, for a reconcile of single networks (partial.go), which
	// takes every other network from here: the state as given, the active networks (sorted by VNI)
	// and each one's firewall view (liteOf). Valid while partialOK: the last reconcile ended without
	// error and the last complete one set them.
	lastDesired State
	lastActive  []NetworkState
	lastLite    []NetworkState
	partialOK   bool

	// Kicks not yet taken by Run: a complete reconcile, and networks to reconcile alone; and the
	// network of each VNI set up by the last reconcile (kernel notifications of a VXLAN device's
	// entries kick that network). Under kmu, never held for long.
	kmu      sync.Mutex
	kickAll  bool
	kickNets map[string]bool
	vniNames map[uint32]string
}

// New returns a Driver for cfg. It touches nothing in the kernel until Reconcile or Run.
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ipt := cfg.IPTables
	if ipt == nil {
		var err error
		if ipt, err = NewIPTables(cfg.HostNetns); err != nil {
			return nil, fmt.Errorf("vxlan driver: %w", err)
		}
	}
	return &Driver{
		cfg:  cfg,
		log:  cfg.Logger.With("component", "vxlan"),
		nl:   cfg.Netlink,
		ipt:  ipt,
		kick: make(chan struct{}, 1),
	}, nil
}

// Kick asks Run to reconcile the whole state now. It never blocks; kicks while a reconcile is
// pending coalesce.
func (d *Driver) Kick() {
	d.kmu.Lock()
	d.kickAll = true
	d.kmu.Unlock()
	d.wake()
}

// KickNetwork asks Run to reconcile the network of this name now, alone when that is safe (see
// RunNetworks): a change of that network's peers. It never blocks; the networks kicked while a
// reconcile is pending coalesce into one reconcile of them all.
func (d *Driver) KickNetwork(name string) {
	d.kmu.Lock()
	if d.kickNets == nil {
		d.kickNets = map[string]bool{}
	}
	d.kickNets[name] = true
	d.kmu.Unlock()
	d.wake()
}

func (d *Driver) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// takeKicks returns and clears the pending kicks: whether the whole state was kicked, and the
// networks kicked (sorted).
func (d *Driver) takeKicks() (all bool, names []string) {
	d.kmu.Lock()
	defer d.kmu.Unlock()
	all, d.kickAll = d.kickAll, false
	for n := range d.kickNets {
		names = append(names, n)
	}
	clear(d.kickNets)
	slices.Sort(names)
	return all, names
}

// Run reconciles the kernel with desired() at start, after every Kick or KickNetwork, every
// Config.Resync, and after a failed reconcile with a doubling backoff (Config.MinBackoff..MaxBackoff).
// desired must be cheap and must not block. Run returns nil when ctx ends, leaving the kernel as it is
// (so that restarting the agent does not cut traffic); tear down with Reconcile(ctx, State{}).
func (d *Driver) Run(ctx context.Context, desired func() State) error {
	return d.RunNetworks(ctx, desired, nil)
}

// RunNetworks is Run, with networks(names) giving the desired state of the named networks alone
// (the NetworkStates desired() would hold for them, in any order; a named network it leaves out has
// no local endpoint): when only KickNetwork kicks are pending, and the last reconcile succeeded, Run
// reconciles those networks alone, which costs their peers rather than every network's. It takes
// every other network, and the tunnel peers, from the last reconcile, and does a complete reconcile
// instead whenever that is not obviously right (partial.go): a kicked network that becomes active or
// inactive on this host, changes its local endpoints or definition, or is encrypted. Kick, the
// periodic resync and the retries after an error are complete reconciles. A nil networks makes
// KickNetwork a Kick.
func (d *Driver) RunNetworks(ctx context.Context, desired func() State, networks func(names []string) State) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if w, ok := d.nl.(netlink.Watcher); ok && d.cfg.Watch {
		wg.Add(1)
		go func() { defer wg.Done(); d.watch(ctx, w) }()
	}
	var backoff time.Duration
	wait := time.Duration(0)
	resync := time.Now() // when the next periodic (complete) reconcile is due
	for {
		t := time.NewTimer(wait)
		timer := false
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
			timer = true
		case <-d.kick:
			t.Stop()
		}
		all, names := d.takeKicks()
		var err error
		switch {
		case timer || all || backoff > 0 || networks == nil || !time.Now().Before(resync):
			err = d.reconcile(ctx, desired(), timer)
			if err == nil {
				resync = time.Now().Add(d.cfg.Resync)
			}
		case len(names) > 0:
			if err = d.reconcileNetworks(ctx, names, networks(names)); errors.Is(err, errNotPartial) {
				err = d.reconcile(ctx, desired(), false)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			backoff = min(max(2*backoff, d.cfg.MinBackoff), d.cfg.MaxBackoff)
			d.log.Warn("reconcile failed, will retry", "err", err, "retry_in", backoff)
			wait = backoff
			continue
		}
		backoff = 0
		wait = max(time.Until(resync), 0)
	}
}

// watch kicks the run loop whenever the kernel reports a change to one of ov's links or entries;
// it resubscribes after a failure.
func (d *Driver) watch(ctx context.Context, w netlink.Watcher) {
	for ctx.Err() == nil {
		err := w.Watch(ctx, d.cfg.HostNetns, func(e netlink.Event) {
			if ownedEvent(e) {
				d.kickFor(e)
			}
		})
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("kernel change notifications lost; relying on periodic resync until resubscribed", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(d.cfg.MaxBackoff):
		}
	}
}

// kickFor kicks the reconcile a kernel change of ov's calls for: a change of a VXLAN device's
// neighbour or FDB entries concerns its network alone (among them the echo of every entry a
// reconcile sets, which must not cost a complete reconcile each time), a link change everything.
func (d *Driver) kickFor(e netlink.Event) {
	if e.Neigh {
		if vni, err := strconv.ParseUint(strings.TrimPrefix(e.Link, "ovvx-"), 10, 32); err == nil {
			d.kmu.Lock()
			name, ok := d.vniNames[uint32(vni)]
			d.kmu.Unlock()
			if ok {
				d.KickNetwork(name)
				return
			}
		}
	}
	d.Kick()
}

// ownedEvent tells whether a kernel change touches what the driver owns: its links, and the ARP and
// self FDB entries of its VXLAN devices (not the learned entries of the previous design's bridges),
// and the links of the previous design, to delete.
func ownedEvent(e netlink.Event) bool {
	if !e.Neigh {
		for _, prefix := range []string{"ovgw-", "ovvx-", "ovwg", legacyBridgePrefix, legacyVethPrefix} {
			if strings.HasPrefix(e.Link, prefix) {
				return true
			}
		}
		return false
	}
	return strings.HasPrefix(e.Link, "ovvx-") && (!e.FDB || e.FDBSelf)
}

// Reconcile makes the kernel of the host match s exactly: it creates, fixes and removes VXLAN
// devices, gateway and container macvlans, neighbour and FDB entries and iptables rules. Networks without local
// endpoints are torn down on this host. The entries of s that cannot be programmed (see
// State.Sanitize) are left out, logged once and reported by Status; they are no error, and the rest
// is programmed. It carries on past a failing network or endpoint and returns every failure joined;
// calling it again retries.
func (d *Driver) Reconcile(ctx context.Context, s State) error { return d.reconcile(ctx, s, true) }

// ReconcileNow is Reconcile(ctx, desired()), with desired called once no other reconcile runs: a
// caller whose state may change meanwhile (an attach, while watch events arrive) must not program a
// state older than what a reconcile of single networks (RunNetworks) has programmed in between, which
// no pending kick would correct.
func (d *Driver) ReconcileNow(ctx context.Context, desired func() State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reconcileLocked(ctx, desired(), true)
}

// reconcile is Reconcile; unless full, it skips the iptables pass when the chains are as the last
// pass, younger than Resync, left them.
func (d *Driver) reconcile(ctx context.Context, desired State, full bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reconcileLocked(ctx, desired, full)
}

// reconcileLocked is reconcile; d.mu is held.
func (d *Driver) reconcileLocked(ctx context.Context, desired State, full bool) (err error) {
	s, probs := d.withoutLocalPeers(desired).Sanitize()
	d.partialOK = false
	d.noteProblems(probs, nil)
	var active []NetworkState
	for _, ns := range s.Networks {
		if len(ns.Endpoints) > 0 {
			active = append(active, ns)
		}
	}
	slices.SortFunc(active, func(a, b NetworkState) int { return int(a.Network.VNI) - int(b.Network.VNI) })
	lite := d.liteOf(active)
	netErrs := map[string]error{}
	defer func() { d.recordStatus(desired, active, lite, netErrs, err) }()
	start := time.Now()
	p := &pass{d: d}
	defer func() { // before recordStatus
		same := func() bool { return sameState(s, d.converged) }
		d.countChanges(s, same, Reconciled{Took: time.Since(start), Changes: p.changes, Err: err, Networks: len(active)})
	}()
	h, err := d.nl.Handle(d.cfg.HostNetns)
	if err != nil {
		return fmt.Errorf("vxlan reconcile: %w", err)
	}
	defer h.Close()
	p.h = h

	// Stale links go first: the previous design's bridges hold the gateway addresses and their veths
	// the containers' interface names that the macvlans take over, and the VXLAN devices of networks
	// that go must not count among the host's VNIs for the ingress filter (ingressRules).
	var errs []error
	if err := p.removeStale(active); err != nil {
		errs = append(errs, err)
	}
	// Fail closed: the VXLAN ingress filter is in place before any VXLAN device exists, and when it
	// cannot be installed no network is set up. The filter needs the underlay interface, so a LocalIP
	// on no interface stops everything too.
	var ul underlay
	if len(active) > 0 {
		if ul, err = p.underlay(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := p.keptVTEPs(active, lite); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	fwErr := p.firewall(lite, ul, full)
	if fwErr != nil {
		errs = append(errs, fwErr)
	}
	// The tunnel after the filter (which drops an encrypted network's VXLAN on any other interface)
	// and before the VXLAN devices: an encrypted network whose tunnel fails is not set up.
	var tunErr error
	if fwErr == nil && slices.ContainsFunc(active, func(ns NetworkState) bool { return ns.Network.Encrypted }) {
		if tunErr = d.cfg.Tunnel.Converge(ctx, s.TunnelPeers, ul.mtu-TunnelOverhead); tunErr != nil {
			tunErr = fmt.Errorf("encrypted overlay networks stay down on this host: tunnel %s: %w", d.cfg.Tunnel.Name(), tunErr)
			errs = append(errs, tunErr)
		}
	}
	now := map[endpointKey]endpointLoc{}
	for _, ns := range active {
		for _, e := range ns.Endpoints {
			now[endpointKey{ns.Network.VNI, e.ContainerID}] = endpointLoc{e.NetNSPath, e.IfName, e.IP, len(e.Ports) > 0}
		}
	}
	if err := p.detachGone(d.attached, now); err != nil {
		errs = append(errs, err)
	}
	d.attached = now
	for _, ns := range active {
		if fwErr != nil {
			netErrs[ns.Network.Name] = fwErr
			continue
		}
		if tunErr != nil && ns.Network.Encrypted {
			netErrs[ns.Network.Name] = tunErr
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.network(ns, ul.mtu); err != nil {
			netErrs[ns.Network.Name] = err
			errs = append(errs, fmt.Errorf("overlay network %q (VNI %d): %w", ns.Network.Name, ns.Network.VNI, err))
		}
	}
	d.lastChanges = p.changes
	err = errors.Join(errs...)
	if p.changes > 0 || err != nil {
		d.log.Info("reconciled", "networks", len(active), "changes", p.changes, "took", time.Since(start), "err", err)
	}
	if err == nil {
		d.keepPass(desired, active, lite)
	}
	return err
}

// firewall installs ov's rules for the active networks (the VXLAN ingress filter among them), or
// removes them all when there are none. Its error says that the networks stay down and why.
// active are the networks' firewall views (liteOf).
func (p *pass) firewall(active []NetworkState, ul underlay, full bool) error {
	specs := wantedTables(active, p.d.cfg.LocalIP, ul.name, ul.vnis, p.d.cfg.Port, p.d.cfg.IsolateFrom, p.d.cfg.NoTrack)
	specs = withTunnel(specs, active, tunnelEnds{name: p.d.tunnelName(), addr: p.d.tunnelAddr()}, p.d.cfg.Port, p.d.cfg.NoTrack)
	if !full && time.Since(p.d.fwAt) < p.d.cfg.Resync && reflect.DeepEqual(specs, p.d.fwSpecs) {
		return nil
	}
	p.d.fwAt = time.Time{}
	if err := p.firewallPass(active, specs); err != nil {
		if len(active) == 0 {
			return fmt.Errorf("overlay firewall: remove ov's rules: %w", err)
		}
		return fmt.Errorf("overlay firewall: cannot install the VXLAN ingress filter, so no overlay network is brought up on this host "+
			"(it needs iptables-save and iptables-restore with the raw and filter tables and the udp, u32 and comment matches: "+
			"kernel options CONFIG_NETFILTER_XT_MATCH_U32 and CONFIG_NETFILTER_XT_MATCH_COMMENT, Debian package iptables): %w", err)
	}
	p.d.fwSpecs, p.d.fwAt = specs, time.Now()
	return nil
}

func (p *pass) firewallPass(active []NetworkState, specs []iptables.Table) error {
	n, err := syncTables(p.d.ipt, specs, len(active) == 0)
	p.changes += n
	if err != nil {
		return err
	}
	if p.d.cfg.IPForward && slices.ContainsFunc(active, func(ns NetworkState) bool { return !ns.Network.Internal }) {
		changed, err := enableIPForward(p.d.cfg.HostNetns)
		if changed {
			p.changes++
		}
		return err
	}
	return nil
}

// withoutLocalPeers drops the peers that live on this host (VTEP == local): callers may list every
// endpoint of a network as a peer, local ones included.
func (d *Driver) withoutLocalPeers(s State) State {
	out := State{Networks: make([]NetworkState, len(s.Networks)), TunnelPeers: s.TunnelPeers}
	for i, ns := range s.Networks {
		local := d.localVTEP(ns.Network)
		if ns.Network.Encrypted && !local.IsValid() {
			ns.LeftOut = append(ns.LeftOut, Problem{Network: ns.Network.Name, Kind: KindNetwork, Entry: fmt.Sprintf("VNI %d", ns.Network.VNI),
				Reason: "the network is encrypted and this host's agent has no WireGuard tunnel (see the agent's log); it is not set up here, never in clear"})
		}
		ns.Peers = slices.DeleteFunc(slices.Clone(ns.Peers), func(p Peer) bool { return p.VTEP == local })
		out.Networks[i] = ns
	}
	return out
}
