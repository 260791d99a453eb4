package overlay

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/vxlan"
)

// Attach gives the container an address on the network (from the controller), connects its namespace
// to the network's bridge on this host and programs the data plane.
func (d *Driver) Attach(ctx context.Context, req driver.AttachRequest) (api.ContainerEndpoint, error) {
	ctl, err := d.ready()
	if err != nil {
		return api.ContainerEndpoint{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	ports, err := driver.ParsePorts(req.Ports)
	if err != nil {
		return api.ContainerEndpoint{}, fmt.Errorf("overlay network %q: %w", req.Network, err)
	}
	if _, err := d.refreshNetworks(rctx); err != nil {
		return api.ContainerEndpoint{}, unreachable(fmt.Sprintf("overlay network %q", req.Network), err)
	}
	d.mu.Lock()
	ns, ok := d.st.Networks[req.Network]
	d.mu.Unlock()
	if !ok {
		return api.ContainerEndpoint{}, fmt.Errorf("overlay network %q: no such network; see ovctl network ls: %w", req.Network, errdefs.ErrNotFound)
	}
	n := ns.Network
	d.mu.Lock()
	err = d.checkPublishLocked(n, req.Container, ports)
	d.mu.Unlock()
	if err != nil {
		return api.ContainerEndpoint{}, err
	}
	if subnet, err := netip.ParsePrefix(n.Subnet); err == nil && !d.serves(req.Network) {
		if err := d.checkRoutes(req.Network, subnet); err != nil {
			return api.ContainerEndpoint{}, err
		}
	}
	if err := d.awaitRelease(rctx, req.Network, req.Container); err != nil {
		return api.ContainerEndpoint{}, unreachable(fmt.Sprintf("allocate an address on overlay network %q", req.Network), err)
	}
	ep, err := ctl.Allocate(rctx, api.Endpoint{Network: req.Network, Host: d.cfg.Host, Container: req.Container, IP: req.IP, Names: req.Names})
	if err != nil {
		if ambiguous(err) {
			// The allocation may have been made with its answer lost (a partition, a controller killed
			// after its etcd transaction): release it by owner, now or with the heartbeats, or the
			// address stays held by a container that does not exist. Releasing nothing is harmless.
			d.release(ctl, api.Endpoint{Network: req.Network, Host: d.cfg.Host, Container: req.Container})
		}
		return api.ContainerEndpoint{}, unreachable(fmt.Sprintf("allocate an address on overlay network %q", req.Network), err)
	}
	d.dropQueuedRelease(req.Network, req.Container)
	ifName, err := d.freeIfName(req.Netns, d.ifNamesOf(req.Container))
	if err != nil {
		d.release(ctl, ep)
		return api.ContainerEndpoint{}, err
	}
	d.mu.Lock()
	ns = d.st.Networks[req.Network]
	if err := d.checkPublishLocked(ns.Network, req.Container, ports); err != nil {
		d.mu.Unlock() // another container took the port while the address was allocated
		d.release(ctl, ep)
		return api.ContainerEndpoint{}, err
	}
	if ns.Local == nil {
		ns.Local = map[string]localEndpoint{}
	}
	if old, ok := ns.Local[req.Container]; ok {
		ifName = old.IfName // attaching again: keep the interface it has
	}
	ns.Local[req.Container] = localEndpoint{Container: req.Container, Netns: req.Netns, IfName: ifName, IP: ep.IP,
		Names: req.Names, NamesPending: !slices.Equal(ep.Names, req.Names), // attached before: the names it had
		Ports: ports}
	if ns.Remote == nil {
		ns.Remote = map[string]api.Endpoint{}
	}
	ns.Remote[remoteKey(ep.Host, ep.Container)] = ep
	d.ensureWatchLocked(req.Network)
	d.mu.Unlock()
	if err = d.persist(); err == nil {
		err = d.program(ctx, req.Network, req.Netns, ifName)
	}
	if why := d.leftOut(req.Network, req.Container); err != nil && why != "" {
		err = fmt.Errorf("%s: %w", why, errdefs.ErrConflict)
	}
	if err != nil {
		d.forget(req.Network, req.Container)
		_ = d.reconcileDataplane(context.Background(), req.Network)
		d.release(ctl, ep)
		return api.ContainerEndpoint{}, fmt.Errorf("connect container %s to overlay network %q: %w", api.ShortID(req.Container), req.Network, err)
	}
	p, _ := netip.ParsePrefix(n.Subnet)
	return api.ContainerEndpoint{
		Network:   req.Network,
		Driver:    api.DriverOverlay,
		Interface: ifName,
		IP:        ep.IP,
		PrefixLen: p.Bits(),
		Gateway:   n.Gateway,
		MAC:       vxlan.MACFromIP(netip.MustParseAddr(ep.IP)).String(),
	}, nil
}

// serves reports whether this host has containers on the network already (its bridge and routes exist).
func (d *Driver) serves(network string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	ns, ok := d.st.Networks[network]
	return ok && len(ns.Local) > 0
}

// program reconciles the data plane now and checks that the container's interface exists; a failure
// elsewhere (another network) does not fail this attach.
func (d *Driver) program(ctx context.Context, network, netnsPath, ifName string) error {
	err := d.reconcileDataplane(ctx, network)
	if names, lerr := d.links(netnsPath); lerr == nil && slices.Contains(names, ifName) {
		if err != nil {
			d.log.Warn("data plane reconcile reported errors elsewhere", "err", err)
		}
		return nil
	} else if err == nil {
		err = fmt.Errorf("interface %s did not appear in %s (%v)", ifName, netnsPath, lerr)
	}
	return err
}

func (d *Driver) ifNamesOf(container string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for _, ns := range d.st.Networks {
		if l, ok := ns.Local[container]; ok {
			names = append(names, l.IfName)
		}
	}
	return names
}

// forget drops a local endpoint from the state; it reports whether there was one.
func (d *Driver) forget(network, container string) (localEndpoint, bool) {
	l, ok := d.forgetLocked(network, container)
	if ok {
		_ = d.persist()
	}
	return l, ok
}

func (d *Driver) forgetLocked(network, container string) (localEndpoint, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ns, ok := d.st.Networks[network]
	if !ok {
		return localEndpoint{}, false
	}
	l, ok := ns.Local[container]
	if !ok {
		return localEndpoint{}, false
	}
	delete(ns.Local, container)
	delete(ns.Remote, remoteKey(d.cfg.Host, container))
	if len(ns.Local) == 0 {
		if cancel, ok := d.watches[network]; ok {
			cancel()
			delete(d.watches, network)
		}
	}
	return l, true
}

func (d *Driver) release(ctl Controller, ep api.Endpoint) {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.RequestTimeout)
	defer cancel()
	if err := ctl.Release(ctx, ep.Network, ep.Host, ep.Container); err != nil {
		d.log.Warn("release failed; retrying with the heartbeat", "network", ep.Network, "container", ep.Container, "err", err)
		d.mu.Lock()
		d.released = append(d.released, ep)
		d.mu.Unlock()
	}
}

// dropQueuedRelease forgets the queued releases of a container on a network once it holds a new
// allocation there: a release queued when an earlier attach failed (its allocation's answer lost, the
// release unreachable too) is by owner, and at the next heartbeat it would delete the allocation this
// attach just made (found by cmd/ovbench-scale at 1,000 hosts: every other host withdrew the address).
func (d *Driver) dropQueuedRelease(network, container string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.released = slices.DeleteFunc(d.released, func(ep api.Endpoint) bool { return ep.Network == network && ep.Container == container })
}

// Detach disconnects the container from the network on this host and releases its address.
func (d *Driver) Detach(ctx context.Context, network, containerID string) error {
	l, ok := d.forget(network, containerID)
	if !ok {
		return nil
	}
	if err := d.reconcileDataplane(ctx, network); err != nil {
		d.log.Warn("data plane reconcile after detach", "network", network, "container", api.ShortID(containerID), "err", err)
	}
	ep := api.Endpoint{Network: network, Host: d.cfg.Host, Container: containerID, IP: l.IP}
	if ctl := d.controller(); ctl != nil {
		d.release(ctl, ep)
	} else {
		d.mu.Lock()
		d.released = append(d.released, ep)
		d.mu.Unlock()
	}
	return nil
}
