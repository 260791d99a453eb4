package overlay

import (
	"context"
	"net/netip"
	"slices"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/dns"
)

// Names of endpoints (docs/dns.md). The driver keeps the name table (Config.Names) equal to the
// endpoints of its state: on every watch event, on a snapshot (a re-list), and from the state file at
// start, so that names keep resolving while the controller is down and a failed watch never empties
// the table (only a successful snapshot replaces it). Other hosts' endpoints come from the watch; this
// host's from its local endpoints, with the names the agent gave (at attach, emptied while the
// container is stopped: SetNames). The agent also sets and removes its containers' records itself (at
// once on exit, before SetNames); both write the same records. A snapshot or a start replaces a
// network's records in one SetNetwork: the table rebuilds a network's index on every change, so one
// Set per endpoint would cost the square of the network's size.
//
// The driver also carries the names of its own endpoints to the controller: given at allocation,
// emptied while the container is stopped, retried with the heartbeat when the controller cannot be
// reached.

// nameKey is one endpoint's record in the table: (network, container of another host).
type nameKey struct{ network, container string }

// remoteRecord is the table record of a remote endpoint, false when it has none (this host's, no
// names, an address that does not parse). Names that are not DNS names are dropped (the controller
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

// syncNamesLocked replaces the table's records of network (of every network of the state when
// network is "") with those of its endpoints, local and remote, in one SetNetwork each; d.mu is held.
func (d *Driver) syncNamesLocked(network string) {
	if d.cfg.Names == nil {
		return
	}
	for k := range d.named {
		if network == "" || k.network == network {
			delete(d.named, k)
		}
	}
	for name, ns := range d.st.Networks {
		if network != "" && name != network {
			continue
		}
		recs := make([]dns.Record, 0, len(ns.Remote))
		for _, ep := range ns.Remote {
			if r, ok := d.remoteRecord(name, ep); ok {
				recs = append(recs, r)
				d.named[nameKey{name, r.Container}] = r
			}
		}
		for _, l := range ns.Local {
			if r, ok := localRecord(name, l); ok {
				recs = append(recs, r)
			}
		}
		d.cfg.Names.SetNetwork(name, recs)
	}
}

// dropNetworkNamesLocked takes the records of a network that left the state out of the table; d.mu
// is held.
func (d *Driver) dropNetworkNamesLocked(network string) {
	if d.cfg.Names == nil {
		return
	}
	for k := range d.named {
		if k.network == network {
			delete(d.named, k)
		}
	}
	d.cfg.Names.SetNetwork(network, nil)
}

// putNameLocked and dropNameLocked apply one watch event's endpoint to the table; d.mu is held.
func (d *Driver) putNameLocked(network string, ep api.Endpoint) {
	if d.cfg.Names == nil || ep.Host == d.cfg.Host {
		return
	}
	r, ok := d.remoteRecord(network, ep)
	if !ok {
		d.dropNameLocked(network, ep.Container)
		return
	}
	k := nameKey{network, ep.Container}
	if old, had := d.named[k]; !had || !sameRecord(old, r) {
		d.cfg.Names.Set(r)
		d.named[k] = r
	}
}

func (d *Driver) dropNameLocked(network, container string) {
	k := nameKey{network, container}
	if _, ok := d.named[k]; ok && d.cfg.Names != nil {
		d.cfg.Names.Remove(network, container)
		delete(d.named, k)
	}
}

func sameRecord(a, b dns.Record) bool {
	return a.IP == b.IP && slices.Equal(a.Names, b.Names)
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
	if d.cfg.Names != nil {
		if r, ok := localRecord(network, l); ok {
			d.cfg.Names.Set(r)
		} else {
			d.cfg.Names.Remove(network, container)
		}
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
