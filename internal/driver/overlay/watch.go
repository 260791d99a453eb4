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
			changed = true
		}
	}
	d.mu.Unlock()
	if changed { // this runs for every network lookup of every `ovctl run`: write only news
		_ = d.persist()
	}
	return out, nil
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
	d.mu.Unlock()
	if changed {
		d.dp.Kick() // program the kernel first; the watch replays from the saved revision after a crash
		_ = d.persist()
	}
}
