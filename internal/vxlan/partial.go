package vxlan

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// A reconcile of single networks (RunNetworks, KickNetwork): a watch event changes one network's
// peers, and comparing every network's neighbour and FDB tables with the wanted ones for it costs
// O(all the host's peers) (0.5-1.7 s at 57,000 peers). reconcileNetworks programs the kicked
// networks alone and takes everything else from the last reconcile: the other networks' state, the
// attached containers, the tunnel. What spans networks is recomputed from the merged state, cheaply:
// the firewall (from each network's VTEPs, liteOf; its pass skipped when the rules are unchanged, as
// a kicked complete reconcile does), Status (problems per network), the repair bookkeeping. It
// declines (errNotPartial, having done nothing) whenever that is not obviously the same as a
// complete reconcile; Run then does a complete one.

// errNotPartial says that the kicked networks need a complete reconcile.
var errNotPartial = errors.New("vxlan: the change needs a complete reconcile")

// liteOf returns the networks as the firewall and Status see them: without peers, with VTEPs the
// other hosts serving the network (remoteVTEPs, which the firewall's rules are made of). Computing
// it once per network and reusing it keeps a reconcile of one network from walking every peer.
func (d *Driver) liteOf(active []NetworkState) []NetworkState {
	out := make([]NetworkState, len(active))
	for i, ns := range active {
		out[i] = NetworkState{Network: ns.Network, Endpoints: ns.Endpoints, VTEPs: remoteVTEPs(ns, d.localVTEP(ns.Network))}
	}
	return out
}

// keepPass remembers what a reconcile that ended without error worked from, for the next partial
// ones, and which network each VNI is (for kernel notifications). Callers hold d.mu.
func (d *Driver) keepPass(desired State, active, lite []NetworkState) {
	d.lastDesired, d.lastActive, d.lastLite, d.partialOK = desired, active, lite, true
	names := make(map[uint32]string, len(active))
	for _, ns := range active {
		names[ns.Network.VNI] = ns.Network.Name
	}
	d.kmu.Lock()
	d.vniNames = names
	d.kmu.Unlock()
}

// partialPlan is the plan of a reconcile of the networks names whose desired state is got (as given)
// and s (sanitized), or false when it needs a complete reconcile. Callers hold d.mu.
type partialPlan struct {
	desired []int // per network of got: its index in d.lastDesired.Networks
	active  []int // per network of got: its index in d.lastActive (and d.lastLite)
	now     []NetworkState
}

func (d *Driver) planPartial(names []string, got, s State) (partialPlan, bool) {
	var pl partialPlan
	if !d.partialOK {
		return pl, false
	}
	byName := func(nets []NetworkState, name string) int {
		return slices.IndexFunc(nets, func(ns NetworkState) bool { return ns.Network.Name == name })
	}
	for _, name := range names {
		g, l := byName(got.Networks, name), byName(d.lastDesired.Networks, name)
		if g < 0 && l < 0 {
			continue // served by no local container, before and now: nothing to do here
		}
		if g < 0 || l < 0 || byName(got.Networks[g+1:], name) >= 0 {
			return pl, false // becomes active or inactive (or a caller's mistake)
		}
		before, now := d.lastDesired.Networks[l], got.Networks[g]
		if before.Network != now.Network || now.Network.Encrypted {
			return pl, false // its definition changed; or encrypted: its tunnel peers span networks
		}
		a, sn := byName(d.lastActive, name), byName(s.Networks, name)
		if a < 0 || sn < 0 || len(s.Networks[sn].Endpoints) == 0 {
			return pl, false // not set up before, or not now
		}
		pl.desired, pl.active, pl.now = append(pl.desired, l), append(pl.active, a), append(pl.now, s.Networks[sn])
	}
	return pl, true
}

// reconcileNetworks reconciles the networks names alone, got being their desired state (see
// RunNetworks), or returns errNotPartial having done nothing.
func (d *Driver) reconcileNetworks(ctx context.Context, names []string, got State) (err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reconcileNetworksLocked(ctx, names, got)
}

// ReconcileNetworksNow reconciles the networks names alone, with their desired state from networks,
// called once no other reconcile runs (as ReconcileNow), and falls back to a complete reconcile of
// desired() when they need one (a network set up or torn down here, an encrypted one, a definition
// changed). An attach or a detach changes one network's local containers: at 57,000 peers a complete
// reconcile costs about a second of CPU, so starting 100 containers on such a host cost 100 of them.
func (d *Driver) ReconcileNetworksNow(ctx context.Context, names []string, networks func(names []string) State, desired func() State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.reconcileNetworksLocked(ctx, names, networks(names)); !errors.Is(err, errNotPartial) {
		return err
	}
	return d.reconcileLocked(ctx, desired(), true)
}

// reconcileNetworksLocked is reconcileNetworks; d.mu is held.
func (d *Driver) reconcileNetworksLocked(ctx context.Context, names []string, got State) (err error) {
	s, probs := d.withoutLocalPeers(got).Sanitize()
	pl, ok := d.planPartial(names, got, s)
	if !ok {
		return errNotPartial
	}
	d.partialOK = false
	// The merged state: the last reconcile's, with the kicked networks as they are now.
	desired := State{Networks: slices.Clone(d.lastDesired.Networks), TunnelPeers: d.lastDesired.TunnelPeers}
	active, lite := slices.Clone(d.lastActive), slices.Clone(d.lastLite)
	merged := State{Networks: slices.Clone(d.converged.Networks), TunnelPeers: d.converged.TunnelPeers}
	before := make([]NetworkState, len(pl.now))
	fresh := d.liteOf(pl.now)
	for i, ns := range pl.now {
		desired.Networks[pl.desired[i]] = got.Networks[slices.IndexFunc(got.Networks, func(g NetworkState) bool { return g.Network.Name == ns.Network.Name })]
		before[i], active[pl.active[i]] = active[pl.active[i]], ns
		if j := slices.IndexFunc(merged.Networks, func(m NetworkState) bool { return m.Network.Name == ns.Network.Name }); j >= 0 {
			merged.Networks[j] = ns
		}
	}
	d.noteProblems(probs, names)
	netErrs := map[string]error{}
	defer func() { d.recordStatus(desired, active, lite, netErrs, err) }()
	start := time.Now()
	p := &pass{d: d}
	defer func() { // before recordStatus
		same := func() bool { return sameState(State{Networks: pl.now}, State{Networks: before}) }
		d.countChanges(merged, same, Reconciled{Took: time.Since(start), Changes: p.changes, Err: err, Networks: len(pl.now), Partial: true})
	}()
	if p.h, err = d.nl.Handle(d.cfg.HostNetns); err != nil {
		return fmt.Errorf("vxlan reconcile: %w", err)
	}
	defer p.h.Close()
	ul, err := p.underlay()
	if err != nil {
		return err
	}
	if err := p.keptVTEPs(pl.now, fresh); err != nil {
		return err
	}
	for i := range pl.now {
		lite[pl.active[i]] = fresh[i]
	}
	if err := p.firewall(lite, ul, false); err != nil {
		for _, ns := range pl.now {
			netErrs[ns.Network.Name] = err
		}
		return err
	}
	var errs []error
	if err := p.detachGone(d.attachedNow(pl.now)); err != nil { // containers that left a kicked network
		errs = append(errs, err)
	}
	for _, ns := range pl.now {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.network(ns, ul.mtu); err != nil {
			netErrs[ns.Network.Name] = err
			errs = append(errs, fmt.Errorf("overlay network %q (VNI %d): %w", ns.Network.Name, ns.Network.VNI, err))
		}
	}
	d.lastChanges = p.changes
	if err = errors.Join(errs...); p.changes > 0 || err != nil {
		d.log.Info("reconciled", "networks", len(pl.now), "of", len(active), "changes", p.changes, "took", time.Since(start), "err", err)
	}
	if err == nil {
		d.lastDesired, d.lastActive, d.lastLite, d.partialOK = desired, active, lite, true
	}
	return err
}

// attachedNow replaces the kicked networks' containers in d.attached with those of nets, and returns
// what they were and what they are now (for detachGone). Callers hold d.mu.
func (d *Driver) attachedNow(nets []NetworkState) (prev, now map[endpointKey]endpointLoc) {
	prev, now = map[endpointKey]endpointLoc{}, make(map[endpointKey]endpointLoc, len(d.attached))
	kicked := map[uint32]bool{}
	for _, ns := range nets {
		kicked[ns.Network.VNI] = true
	}
	for k, loc := range d.attached {
		if kicked[k.vni] {
			prev[k] = loc
		} else {
			now[k] = loc
		}
	}
	for _, ns := range nets {
		for _, e := range ns.Endpoints {
			now[endpointKey{ns.Network.VNI, e.ContainerID}] = endpointLoc{e.NetNSPath, e.IfName, e.IP, len(e.Ports) > 0}
		}
	}
	d.attached = now
	return prev, now
}
