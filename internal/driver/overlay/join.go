package overlay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

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

// joinWithRetry calls join until it succeeds or ctx ends. A reason it cannot join is logged when it
// changes, not at every retry.
func (d *Driver) joinWithRetry(ctx context.Context) {
	backoff := 200 * time.Millisecond
	var said string
	for {
		err := d.join(ctx)
		d.cfg.Metrics.controllerAnswered(err)
		if err == nil || ctx.Err() != nil {
			return
		}
		d.mu.Lock()
		d.joinErr = err
		d.mu.Unlock()
		switch {
		case err.Error() == said:
			d.log.Debug("cannot join the cluster yet; retrying", "err", err, "retry_in", backoff)
		case errors.Is(err, errdefs.ErrAlreadyExists):
			d.log.Error("cannot join the cluster: the controller knows this host but the agent has no valid host token; an admin must run ovctl node reset-token "+d.cfg.Host+" (the agent then joins by itself, its containers keep their addresses)", "err", err)
		default:
			d.log.Warn("cannot join the cluster yet; retrying", "err", err, "retry_in", backoff)
		}
		said = err.Error()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// heartbeatUntilLost heartbeats every Config.Heartbeat. It returns true when the controller no longer
// accepts the host token (after setting it aside, see tokenRefused, and stopping the watches), false
// when ctx ends. Losing the controller and getting it back are logged once each.
func (d *Driver) heartbeatUntilLost(ctx context.Context) bool {
	t := time.NewTicker(d.cfg.Heartbeat)
	defer t.Stop()
	var refreshed time.Time
	var again <-chan time.Time
	refresh := func() {
		refreshed = time.Now()
		rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
		d.refreshHosts(rctx)
		cancel()
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		case <-d.refreshNow: // gossip changed, or refused a node the host list may not have yet
			again = time.After(time.Second)                   // once more: the list may lag a registration by a moment
			if time.Since(refreshed) > 250*time.Millisecond { // a rogue member may keep knocking
				refresh()
			}
			continue
		case <-again:
			again = nil
			refresh()
			continue
		}
		err := d.heartbeat(ctx)
		switch {
		case err == nil:
			d.tokenAccepted()
			d.controllerBack()
			continue
		case !errors.Is(err, errdefs.ErrUnauthorized) && !errors.Is(err, errdefs.ErrNotFound):
			if ctx.Err() == nil {
				d.controllerLost(err)
			}
			continue
		}
		d.controllerBack() // it answers, if only to refuse
		if !d.tokenRefused(err) {
			continue
		}
		d.mu.Lock()
		d.ctl, d.joinErr = nil, err
		for name, cancel := range d.watches {
			cancel()
			delete(d.watches, name)
		}
		d.mu.Unlock()
		return true
	}
}

// controllerLost logs, once per outage, that the controller stopped answering.
func (d *Driver) controllerLost(err error) {
	d.mu.Lock()
	first := d.lost.IsZero()
	if first {
		d.lost = time.Now()
	}
	d.mu.Unlock()
	if first {
		d.log.Info("lost contact with the controller; containers keep running and the overlay keeps its last known state; retrying", "err", err)
	}
}

// controllerBack logs, once, that the controller answers again after controllerLost.
func (d *Driver) controllerBack() {
	d.mu.Lock()
	since := d.lost
	d.lost = time.Time{}
	d.mu.Unlock()
	if !since.IsZero() {
		d.log.Info("the controller answers again", "after", time.Since(since).Round(time.Second))
	}
}

// join registers the host, reports the endpoints it really has (the controller releases the others),
// learns the other hosts and starts the endpoint watches.
func (d *Driver) join(ctx context.Context) error {
	ctl, err := d.register(ctx)
	if err != nil {
		return err
	}
	d.controllerBack()
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
	// The host list first (the members gossip may accept), then the keyring (gossip starts with it).
	d.mu.Lock()
	d.ctl, d.joinErr = ctl, nil
	d.mu.Unlock()
	d.refreshHosts(ctx)
	if err := d.fetchKeyring(ctx, ctl); err != nil { // retried with every heartbeat until it works
		d.log.Error("no gossip keyring yet: this host does not gossip (other hosts' entries stay programmed)", "err", err)
	}
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

// register registers the host with its host token, or, when it has none (first start, or the token
// was set aside after repeated refusals), with the join token, keeping the host token it gets. It
// returns a client that sends the host token.
func (d *Driver) register(ctx context.Context) (Controller, error) {
	d.mu.Lock()
	token := d.token
	d.mu.Unlock()
	me := api.Host{Name: d.cfg.Host, Address: d.cfg.Address.String(), Labels: d.cfg.Labels, WireGuardKey: d.publicKey()}
	if token != "" {
		c := d.cfg.Connect(token)
		_, err := c.RegisterHost(ctx, me)
		switch {
		case err == nil:
			d.tokenAccepted()
			return c, nil
		case !errors.Is(err, errdefs.ErrUnauthorized) && !errors.Is(err, errdefs.ErrNotFound):
			return nil, fmt.Errorf("register host %q: %w", d.cfg.Host, err)
		case !d.tokenRefused(err):
			return nil, fmt.Errorf("register host %q: the controller refused the host token (kept for now; set aside after %d refusals over %s): %w", d.cfg.Host, d.cfg.TokenRefusals, d.cfg.TokenRefusalWindow, err)
		}
	}
	if d.cfg.JoinToken == "" {
		return nil, fmt.Errorf("host %q has no host token and no join token is configured; give the agent the cluster's join token (ovctl node join-token), and if the host is registered already run ovctl node reset-token %s: %w", d.cfg.Host, d.cfg.Host, errdefs.ErrUnauthorized)
	}
	h, err := d.cfg.Connect(d.cfg.JoinToken).RegisterHost(ctx, me)
	if err != nil {
		return nil, fmt.Errorf("register host %q with the join token: %w", d.cfg.Host, err)
	}
	if h.Token == "" {
		return nil, fmt.Errorf("register host %q: the controller sent no host token: %w", d.cfg.Host, errdefs.ErrUnavailable)
	}
	if err := d.keepToken(h.Token); err != nil {
		return nil, err
	}
	return d.cfg.Connect(h.Token), nil
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
	h, err := ctl.Heartbeat(hctx, d.cfg.Host)
	d.cfg.Metrics.controllerAnswered(err)
	if err != nil {
		d.log.Debug("heartbeat", "err", err)
		return err
	}
	switch rev := h.HostsRevision; {
	case rev != 0 && rev != d.swapHostsRevision(rev):
		d.refreshHosts(hctx) // a host record changed (a new host, address or key)
	case rev != 0:
		d.refreshHostsIfDue(hctx, d.cfg.HostListSafetyEvery)
	default: // a controller that does not report the revision
		d.refreshHostsIfDue(hctx, d.cfg.HostListEvery)
	}
	d.checkKey(hctx, ctl, h)
	if v, have := h.GossipKeyringVersion, d.keyringVersion(); have == 0 || (v != 0 && v != have) {
		if err := d.fetchKeyring(hctx, ctl); err != nil {
			d.log.Warn("the gossip keyring changed but cannot be fetched; retrying with the next heartbeat", "version", v, "err", err)
		}
	}
	d.sendQueuedReleases(hctx, ctl)
	d.pushNames(ctx)
	return nil
}

// refreshHosts learns the registered hosts: their VTEP addresses, the gossip seeds and the only
// members gossip accepts.
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
	d.noteHostsRead()
	m := make(map[string]api.Host, len(hosts))
	for _, h := range hosts {
		m[h.Name] = h
	}
	d.mu.Lock()
	changed := !equalHosts(d.st.Hosts, m)
	if changed {
		d.st.Hosts = m
	}
	members := d.gossipHostsLocked()
	d.mu.Unlock()
	d.cfg.Members.SetHosts(members)
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
		if o, ok := b[k]; !ok || o.Address != h.Address || o.WireGuardKey != h.WireGuardKey {
			return false
		}
	}
	return true
}
