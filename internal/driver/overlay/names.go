package overlay

import (
	"context"
	"net/netip"
	"slices"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/dns"
)

// Names of endpoints (docs/dns.md). The driver keeps the name table (Config.Names) equal to the
// remote endpoints of its state: on every watch event, on a snapshot (a re-list), and from the state
// file at start, so that names keep resolving while the controller is down and a failed watch never
// empties the table (only a successful snapshot replaces it). This host's own endpoints are the
// agent's to put in the table (it knows when a container stops). And the driver carries the names of
// its own endpoints to the controller: given at allocation, emptied while the container is stopped
// (SetNames), retried with the heartbeat when the controller cannot be reached.

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

// syncNamesLocked makes the table hold exactly the records of the remote endpoints of network (all
// of its networks when network is ""); d.mu is held.
func (d *Driver) syncNamesLocked(network string) {
	if d.cfg.Names == nil {
		return
	}
	want := map[nameKey]dns.Record{}
	for name, ns := range d.st.Networks {
		if network != "" && name != network {
			continue
		}
		for _, ep := range ns.Remote {
			if r, ok := d.remoteRecord(name, ep); ok {
				want[nameKey{name, r.Container}] = r
			}
		}
	}
	for k := range d.named {
		if _, ok := want[k]; !ok && (network == "" || k.network == network) {
			d.cfg.Names.Remove(k.network, k.container)
			delete(d.named, k)
		}
	}
	for k, r := range want {
		if old, ok := d.named[k]; !ok || !sameRecord(old, r) {
			d.cfg.Names.Set(r)
			d.named[k] = r
		}
	}
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
