package overlay

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/dns"
)

// Names of endpoints (docs/dns.md). The driver keeps the name table (Config.Names) equal to the
// endpoints of its state: after every watch event, snapshot (a re-list) or change of names, and from
// the state file at start, so that names keep resolving while the controller is down and a failed
// watch never empties the table (only a successful snapshot replaces it). Other hosts' endpoints come
// from the watch; this host's from its local endpoints, with the names the agent gave (at attach,
// emptied while the container is stopped: SetNames). The agent also sets and removes its containers'
// records itself (at once on exit, before SetNames); both write the same records. A network's records
// are replaced in one SetNetwork by runNames, which takes every change made meanwhile: a burst of
// events (a host's containers starting) costs one pass over the network, built outside the table's
// lock.
//
// The driver also carries the names of its own endpoints to the controller: given at allocation,
// emptied while the container is stopped, retried with the heartbeat when the controller cannot be
// reached.

// remoteRecord is the table record of another host's endpoint, false when it has none (this host's,
// no names, an address that does not parse). Names that are not DNS names are dropped (the controller
// refuses them; this is in case of an older one), and so is the endpoint's own view of its network:
// its record goes on network, the one its watch is for.
func (d *Driver) remoteRecord(network string, ep api.Endpoint) (dns.Record, bool) {
	if ep.Host == d.cfg.Host || len(ep.Names) == 0 {
		return dns.Record{}, false
	}
	ip, err := netip.ParseAddr(ep.IP)
	if err != nil {
		return dns.Record{}, false
	}
	var names []string
	for _, n := range ep.Names {
		if api.ValidDNSName(n) && len(names) < api.MaxEndpointNames {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return dns.Record{}, false
	}
	return dns.Record{Network: network, Container: ep.Container, IP: ip, Names: names}, true
}

// localRecord is the table record of a local endpoint, false when it has none (no names: stopped).
func localRecord(network string, l localEndpoint) (dns.Record, bool) {
	ip, err := netip.ParseAddr(l.IP)
	if err != nil || len(l.Names) == 0 {
		return dns.Record{}, false
	}
	return dns.Record{Network: network, Container: l.Container, IP: ip, Names: l.Names}, true
}

// namesFromCopyLocked marks every network of the state as known from the state file only (at start):
// its records are in the table, but an endpoint the controller streamed just before a crash may be
// missing (watch events reach the state file within a second), so until the controller's watch has
// confirmed the network (a snapshot, or the progress event it sends once a resumed watch has caught
// up) a name the table does not hold gets SERVFAIL, never a NXDOMAIN that would be wrong for a live
// container (dns.Table.SetNetworkPending). While the controller is down that lasts: names the table
// holds resolve, unknown ones are "try again". d.mu is held.
func (d *Driver) namesFromCopyLocked() {
	for name := range d.st.Networks {
		d.namesUnsynced[name] = true
	}
}

// namesConfirmedLocked ends namesFromCopyLocked for a network whose watch has caught up; d.mu is held.
func (d *Driver) namesConfirmedLocked(network string) {
	if d.namesUnsynced[network] {
		delete(d.namesUnsynced, network)
		d.namesChangedLocked(network)
	}
}

// namesChangedLocked marks a network's names for runNames to write; d.mu is held. It never blocks.
func (d *Driver) namesChangedLocked(network string) {
	if d.cfg.Names == nil {
		return
	}
	d.namesDirty[network] = true
	select {
	case d.namesKick <- struct{}{}:
	default:
	}
}

// runNames writes the names of the networks that changed, in one SetNetwork per network, until ctx
// ends: a burst of watch events (a host's containers starting) costs one rebuild of the network's
// index, not one per event. After each pass it rests four times as long as the pass took, so that a
// storm of events costs at most a fifth of a CPU (a pass over a network of 5,000 endpoints takes about
// 10 ms: names then reach the table within 50 ms; on small networks at once).
func (d *Driver) runNames(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.namesKick:
		}
		t0 := time.Now()
		d.mu.Lock()
		dirty := d.namesDirty
		d.namesDirty = map[string]bool{}
		d.mu.Unlock()
		d.writeNames(d.namesOf(dirty))
		select {
		case <-ctx.Done():
			return
		case <-time.After(4 * time.Since(t0)):
		}
	}
}

// namesOf returns the records of the given networks (every network of the state when nil), local and
// remote; a network that left the state gets none.
func (d *Driver) namesOf(networks map[string]bool) map[string][]dns.Record {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string][]dns.Record{}
	for name := range networks {
		out[name] = nil
	}
	for name, ns := range d.st.Networks {
		if networks != nil && !networks[name] {
			continue
		}
		recs := make([]dns.Record, 0, len(ns.Remote))
		for _, ep := range ns.Remote {
			if r, ok := d.remoteRecord(name, ep); ok {
				recs = append(recs, r)
			}
		}
		for _, l := range ns.Local {
			if r, ok := localRecord(name, l); ok {
				recs = append(recs, r)
			}
		}
		out[name] = recs
	}
	return out
}

func (d *Driver) writeNames(recs map[string][]dns.Record) {
	if d.cfg.Names == nil {
		return
	}
	for network, rs := range recs {
		d.mu.Lock()
		unsynced := d.namesUnsynced[network]
		d.mu.Unlock()
		if unsynced {
			d.cfg.Names.SetNetworkPending(network, rs)
		} else {
			d.cfg.Names.SetNetwork(network, rs)
		}
	}
}

// SetNames sets the names the controller holds for a container of this host on network (empty
// while the container is stopped). It records them at once and sends them in the background, again
// with each heartbeat until the controller has them; a container not attached there is ignored.
func (d *Driver) SetNames(ctx context.Context, network, container string, names []string) error {
	d.mu.Lock()
	ns, ok := d.st.Networks[network]
	var l localEndpoint
	if ok {
		l, ok = ns.Local[container]
	}
	if !ok || (slices.Equal(l.Names, names) && !l.NamesPending) {
		d.mu.Unlock()
		return nil
	}
	l.Names, l.NamesPending = names, true
	ns.Local[container] = l
	if d.cfg.Names != nil { // at once, and again with the rest of the network by runNames
		if r, ok := localRecord(network, l); ok {
			d.cfg.Names.Set(r)
		} else {
			d.cfg.Names.Remove(network, container)
		}
		d.namesChangedLocked(network)
	}
	runCtx := d.runCtx
	if runCtx != nil && runCtx.Err() == nil {
		d.wg.Add(1) // as reclaim: before Run, the first heartbeat sends them
		go func() {
			defer d.wg.Done()
			d.pushNames(runCtx)
		}()
	}
	d.mu.Unlock()
	return d.persist()
}

// pushNames sends the controller the names of this host's endpoints that it does not have yet.
func (d *Driver) pushNames(ctx context.Context) {
	d.pushMu.Lock()
	defer d.pushMu.Unlock()
	ctl := d.controller()
	if ctl == nil {
		return
	}
	type item struct {
		network, container string
		names              []string
	}
	var todo []item
	d.mu.Lock()
	for name, ns := range d.st.Networks {
		for id, l := range ns.Local {
			if l.NamesPending {
				todo = append(todo, item{name, id, l.Names})
			}
		}
	}
	d.mu.Unlock()
	sent := 0
	for _, it := range todo {
		rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
		_, err := ctl.SetEndpointNames(rctx, it.network, d.cfg.Host, it.container, it.names)
		cancel()
		if err != nil {
			d.log.Warn("send the names of an endpoint to the controller; retrying with the heartbeat", "network", it.network, "container", api.ShortID(it.container), "err", err)
			continue
		}
		d.mu.Lock()
		if ns, ok := d.st.Networks[it.network]; ok {
			if l, ok := ns.Local[it.container]; ok && slices.Equal(l.Names, it.names) {
				l.NamesPending = false
				ns.Local[it.container] = l
				sent++
			}
		}
		d.mu.Unlock()
	}
	if sent > 0 {
		_ = d.persist()
	}
}
