package overlay

import (
	"context"
	"reflect"
	"time"

	"github.com/ovnet/ov/api"
)

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
			d.namesChangedLocked(name) // the network is gone: so are its names
			changed = true
		}
	}
	d.mu.Unlock()
	if changed { // this runs for every network lookup of every `ovctl run`: write only news
		_ = d.persist()
	}
	return out, nil
}

// ensureWatchLocked starts the endpoint watch of a network if it is not running; d.mu is held. The
// network joins the host watch (watchmux.go): one stream for every network of the host. Against a
// controller without it (or a Controller that cannot), the network gets a stream of its own.
// d.watches holds, per network, the function that stops its watch.
func (d *Driver) ensureWatchLocked(network string) {
	if _, ok := d.watches[network]; ok || d.ctl == nil || d.runCtx == nil {
		return
	}
	if _, ok := d.ctl.(hostWatcher); ok && !d.hw.perNetwork && !usePerNetworkWatches {
		d.watches[network] = d.hostWatchAddLocked(network)
		return
	}
	d.watches[network] = d.watchNetworkLocked(network)
}

// watchNetworkLocked starts a stream of network's own and returns the function that stops it; d.mu is
// held.
func (d *Driver) watchNetworkLocked(network string) context.CancelFunc {
	ctx, cancel := context.WithCancel(d.runCtx)
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
	return cancel
}

// apply records one watch event and kicks the data plane. It never blocks on the kernel.
func (d *Driver) apply(network string, ev api.EndpointEvent) {
	d.mu.Lock()
	ns, ok := d.st.Networks[network]
	if !ok {
		d.mu.Unlock()
		return
	}
	var missing []api.Endpoint
	switch ev.Type {
	case api.EventSnapshot:
		ns.Remote = make(map[string]api.Endpoint, len(ev.Endpoints))
		for _, ep := range ev.Endpoints {
			ns.Remote[remoteKey(ep.Host, ep.Container)] = ep
		}
		missing = d.missingLocked(network, ns)
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
	// The saved revision is where the watch resumes after a crash: only a revision applied in full
	// (a later one would skip the rest of a transaction's events), and a snapshot's even when it is
	// lower (the controller's store was restored from a backup).
	switch {
	case ev.Type == api.EventSnapshot:
		ns.Revision = ev.Revision
	case (ev.Type == api.EventProgress || ev.Last) && ev.Revision > ns.Revision:
		ns.Revision = ev.Revision
	}
	changed := ev.Type != api.EventProgress
	if changed {
		d.namesChangedLocked(network)
	}
	if ev.Type == api.EventSnapshot || ev.Type == api.EventProgress {
		d.namesConfirmedLocked(network) // the watch has caught up: names are the controller's now
		if !ns.caughtUp {
			ns.caughtUp = true // and its peers: the data plane may delete the entries of the others (keepPeersLocked)
			changed = true
		}
	}
	if len(missing) > 0 && d.runCtx != nil {
		d.wg.Add(1)
		go d.reclaim(d.runCtx, missing)
	}
	d.mu.Unlock()
	if changed {
		d.kickNetwork(network) // program the kernel first; the watch replays from the saved revision after a crash
		d.persistSoon()
	}
}

// missingLocked lists this host's containers on the network that a snapshot does not hold: the
// controller's store lost their allocations (restored from a backup taken before they started). d.mu is
// held.
func (d *Driver) missingLocked(network string, ns *netState) []api.Endpoint {
	var out []api.Endpoint
	for id, l := range ns.Local {
		if _, ok := ns.Remote[remoteKey(d.cfg.Host, id)]; !ok && l.IP != "" {
			out = append(out, api.Endpoint{Network: network, Host: d.cfg.Host, Container: id, IP: l.IP, Names: l.Names})
		}
	}
	return out
}

// reclaim asks the controller again for the addresses of this host's running containers that its
// store no longer holds, each the address the container has: after a restore from backup the store
// learns them again instead of handing them to another container. An address given to another
// container in the meantime cannot be taken back: that is logged as an error, for the operator.
func (d *Driver) reclaim(ctx context.Context, eps []api.Endpoint) {
	defer d.wg.Done()
	d.mu.Lock()
	ctl := d.ctl
	d.mu.Unlock()
	if ctl == nil {
		return
	}
	for _, ep := range eps {
		rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
		got, err := ctl.Allocate(rctx, ep)
		cancel()
		switch {
		case err != nil:
			d.log.Error("the controller's store does not hold this container's address and it cannot be claimed again (was the store restored from a backup?); remove and re-run the container to give it a new address",
				"network", ep.Network, "container", api.ShortID(ep.Container), "ip", ep.IP, "err", err)
			continue
		case got.IP != ep.IP:
			d.log.Error("the controller's store holds another address for this container than the one it has; remove and re-run the container",
				"network", ep.Network, "container", api.ShortID(ep.Container), "has", ep.IP, "store", got.IP)
		default:
			d.log.Info("the controller's store did not list this container's address (restored from a backup?): claimed it again",
				"network", ep.Network, "container", api.ShortID(ep.Container), "ip", ep.IP)
		}
		d.mu.Lock()
		still := false
		if ns, ok := d.st.Networks[ep.Network]; ok {
			_, still = ns.Local[ep.Container]
		}
		d.mu.Unlock()
		if !still { // detached meanwhile: give it back
			d.release(ctl, got)
		}
	}
}
