package agent

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
)

const (
	modeNetwork   = driver.ModeNetwork
	modeHost      = driver.ModeHost
	modeNone      = driver.ModeNone
	modeContainer = driver.ModeContainer
)

type netMode struct {
	kind    string
	network string     // modeNetwork: the network's name
	driver  string     // modeNetwork: its driver
	other   *container // modeContainer
}

// parseNetworkMode resolves --network against the agent's networks and containers.
func (a *Agent) parseNetworkMode(s string) (netMode, error) {
	if s == "" {
		s = a.cfg.DefaultNetwork
	}
	m, err := driver.ParseMode(s)
	if err != nil {
		return netMode{}, err
	}
	switch m.Kind {
	case driver.ModeHost, driver.ModeNone:
		return netMode{kind: m.Kind}, nil
	case driver.ModeContainer:
		other, err := a.lookup(m.Container)
		if err != nil {
			return netMode{}, fmt.Errorf("--network container:%s: %w", m.Container, err)
		}
		if other.snapshot().State.Status != api.StateRunning {
			return netMode{}, fmt.Errorf("--network container:%s: that container is not running: %w", m.Container, errdefs.ErrConflict)
		}
		return netMode{kind: modeContainer, other: other}, nil
	}
	n, dname, err := a.findNetwork(context.Background(), m.Network)
	if err != nil {
		return netMode{}, err
	}
	return netMode{kind: modeNetwork, network: n.Name, driver: dname}, nil
}

// findNetwork returns the network named name and the name of its driver.
func (a *Agent) findNetwork(ctx context.Context, name string) (api.Network, string, error) {
	for dname, d := range a.cfg.Drivers {
		nets, err := d.Networks(ctx)
		if err != nil {
			return api.Network{}, "", fmt.Errorf("list %s networks: %w", dname, err)
		}
		for _, n := range nets {
			if n.Name == name {
				return n, dname, nil
			}
		}
	}
	for dname, d := range a.cfg.Drivers {
		if sl, ok := d.(driver.StaleLister); ok {
			if err := sl.ListError(); err != nil {
				return api.Network{}, "", fmt.Errorf("network %q: not known on this host, and the %s networks could not be listed (%v); if it was created recently, try again when the controller answers (ovctl node ls): %w", name, dname, err, errdefs.ErrUnavailable)
			}
		}
	}
	return api.Network{}, "", fmt.Errorf("network %q: no such network; see `ovctl network ls`: %w", name, errdefs.ErrNotFound)
}

type attachResult struct {
	endpoints []api.ContainerEndpoint
	err       error
	took      time.Duration
}

// netnsFor returns the network namespace the container's runtime joins: "" for host and none (the
// runtime makes a fresh one with only lo), another container's for container:NAME, and a new
// bind-mounted one for networks (added to u).
func (a *Agent) netnsFor(ctx context.Context, id string, m netMode, u *undo) (string, error) {
	switch m.kind {
	case modeHost, modeNone:
		return "", nil
	case modeContainer:
		o := m.other.snapshot()
		if o.Config.Network == modeHost {
			return "", fmt.Errorf("--network container:%s: it uses the host's network; use --network host: %w", o.Name, errdefs.ErrInvalidArgument)
		}
		if o.NetNS != "" {
			return o.NetNS, nil
		}
		return "/proc/" + strconv.Itoa(o.State.Pid) + "/ns/net", nil
	}
	if a.cfg.Netns == nil {
		return "", fmt.Errorf("network %q: this agent has no network drivers; use --network none or host: %w", m.network, errdefs.ErrUnavailable)
	}
	path, err := a.cfg.Netns.CreateNetns(ctx, id)
	if err != nil {
		return "", fmt.Errorf("create the network namespace of container %s: %w", api.ShortID(id), err)
	}
	u.add(func() {
		if err := a.cfg.Netns.RemoveNetns(context.Background(), id); err != nil {
			a.log.Warn("remove netns", "container", api.ShortID(id), "err", err)
		}
	})
	return path, nil
}

// attachAsync connects the container's namespace to its network in the background and sends the
// endpoints (or another container's, for container:NAME) to out. The undo step is added now.
func (a *Agent) attachAsync(ctx context.Context, id, name string, req api.ContainerCreate, m netMode, netns string, u *undo, out chan<- attachResult) {
	switch m.kind {
	case modeContainer:
		out <- attachResult{endpoints: m.other.snapshot().Networks}
		return
	case modeNetwork:
	default:
		out <- attachResult{}
		return
	}
	d := a.cfg.Drivers[m.driver]
	u.add(func() {
		if err := d.Detach(context.Background(), m.network, id); err != nil {
			a.log.Warn("detach", "container", api.ShortID(id), "network", m.network, "err", err)
		}
	})
	go func() {
		t0 := time.Now()
		var names []string
		if userDefined(m.network) {
			names = endpointNames(name, containerHostname(id, req, m), req.NetworkAliases)
		}
		ep, err := a.attachPublishing(ctx, m.driver, driver.AttachRequest{Network: m.network, Container: id, Name: name, Netns: netns, IP: req.IP, Ports: req.Ports, Names: names})
		if err != nil {
			out <- attachResult{err: err}
			return
		}
		out <- attachResult{endpoints: []api.ContainerEndpoint{ep}, took: time.Since(t0)}
	}()
}

// teardownNetwork detaches the container from its networks and removes its namespace.
func (a *Agent) teardownNetwork(rec api.Container) {
	ctx := context.Background()
	if strings.HasPrefix(rec.Config.Network, api.NetworkModeContainer) {
		return // another container's namespace: its owner detaches it
	}
	for _, ep := range rec.Networks {
		if d, ok := a.cfg.Drivers[ep.Driver]; ok {
			if err := d.Detach(ctx, ep.Network, rec.ID); err != nil {
				a.log.Warn("detach", "container", api.ShortID(rec.ID), "network", ep.Network, "err", err)
			}
		}
	}
	if a.cfg.Netns != nil && rec.NetNS != "" {
		if err := a.cfg.Netns.RemoveNetns(ctx, rec.ID); err != nil {
			a.log.Warn("remove netns", "container", api.ShortID(rec.ID), "err", err)
		}
	}
}

// Networks lists every network of every driver, plus host and none.
func (a *Agent) Networks(ctx context.Context) ([]api.Network, error) {
	out := []api.Network{{Name: api.DriverHost, Driver: api.DriverHost}, {Name: api.DriverNone, Driver: api.DriverNone}}
	for name, d := range a.cfg.Drivers {
		nets, err := d.Networks(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s networks: %w", name, err)
		}
		out = append(out, nets...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Network returns one network by name, with this host's data plane for it when its driver reports one.
func (a *Agent) Network(ctx context.Context, name string) (api.Network, error) {
	if name == api.DriverHost || name == api.DriverNone {
		return api.Network{Name: name, Driver: name}, nil
	}
	n, dname, err := a.findNetwork(ctx, name)
	if err != nil {
		return n, err
	}
	if r, ok := a.cfg.Drivers[dname].(dataplaneReporter); ok {
		n.Dataplane = r.NetworkDataplane(n.Name)
	}
	n.Containers = a.networkContainers(n.Name)
	return n, nil
}

// dataplaneReporter is implemented by drivers whose networks have a host data plane that reports what
// it programmed and left out (overlay): Network shows it (ovctl network inspect).
type dataplaneReporter interface {
	NetworkDataplane(network string) *api.NetworkDataplane
}

// CreateNetwork creates a network through the driver it names.
func (a *Agent) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	if err := n.Validate(); err != nil {
		return api.Network{}, err
	}
	if n.Name == api.DriverHost || n.Name == api.DriverNone {
		return api.Network{}, fmt.Errorf("network %q: the name is reserved; choose another: %w", n.Name, errdefs.ErrAlreadyExists)
	}
	d, ok := a.cfg.Drivers[n.Driver]
	if !ok {
		return api.Network{}, fmt.Errorf("network %q: driver %q is not available on this agent: %w", n.Name, n.Driver, errdefs.ErrInvalidArgument)
	}
	a.netMu.Lock()
	defer a.netMu.Unlock()
	if _, _, err := a.findNetwork(ctx, n.Name); err == nil {
		return api.Network{}, fmt.Errorf("network %q already exists; choose another name or remove it first: %w", n.Name, errdefs.ErrAlreadyExists)
	}
	if n.Created.IsZero() {
		n.Created = time.Now().UTC()
	}
	return d.CreateNetwork(ctx, n)
}

// DeleteNetwork removes a network no container is attached to.
func (a *Agent) DeleteNetwork(ctx context.Context, name string) error {
	a.netMu.Lock()
	defer a.netMu.Unlock()
	if name == api.DriverHost || name == api.DriverNone {
		return fmt.Errorf("network %q is built in and cannot be removed: %w", name, errdefs.ErrConflict)
	}
	_, dname, err := a.findNetwork(ctx, name)
	if err != nil {
		return err
	}
	// Containers removed a moment ago may still be detaching.
	if err := a.waitTeardowns(ctx); err != nil {
		return err
	}
	if users := a.networkUsers(name); len(users) > 0 {
		return fmt.Errorf("network %q is used by containers %v; disconnect or remove them first: %w", name, users, errdefs.ErrConflict)
	}
	return a.cfg.Drivers[dname].DeleteNetwork(ctx, name)
}

func (a *Agent) networkUsers(name string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var users []string
	for _, c := range a.containers {
		rec := c.snapshot()
		for _, ep := range rec.Networks {
			if ep.Network == name && !strings.HasPrefix(rec.Config.Network, api.NetworkModeContainer) {
				users = append(users, rec.Name)
			}
		}
	}
	sort.Strings(users)
	return users
}

// Connect attaches a container with its own network namespace to another network.
func (a *Agent) Connect(ctx context.Context, netName string, req api.NetworkConnect) (api.Container, error) {
	c, err := a.lookup(req.Container)
	if err != nil {
		return api.Container{}, err
	}
	c.ops.Lock()
	defer c.ops.Unlock()
	rec := c.snapshot()
	if rec.Config.Network == modeHost || strings.HasPrefix(rec.Config.Network, api.NetworkModeContainer) {
		return api.Container{}, fmt.Errorf("connect container %s: it shares another network namespace (--network %s): %w", rec.Name, rec.Config.Network, errdefs.ErrConflict)
	}
	netns := rec.NetNS
	if netns == "" { // --network none: the runtime made the namespace
		netns = "/proc/" + strconv.Itoa(rec.State.Pid) + "/ns/net"
	}
	if rec.State.Status == api.StateExited {
		return api.Container{}, fmt.Errorf("connect container %s: it has exited: %w", rec.Name, errdefs.ErrConflict)
	}
	for _, ep := range rec.Networks {
		if ep.Network == netName {
			return api.Container{}, fmt.Errorf("container %s is already connected to network %q: %w", rec.Name, netName, errdefs.ErrAlreadyExists)
		}
	}
	if req.IP != "" {
		tmp := api.ContainerCreate{Image: "x", IP: req.IP, Network: netName}
		if err := tmp.Validate(); err != nil {
			return api.Container{}, err
		}
	}
	if err := api.ValidateAliases(netName, req.Aliases); err != nil {
		return api.Container{}, fmt.Errorf("connect container %s: %w", rec.Name, err)
	}
	_, dname, err := a.findNetwork(ctx, netName)
	if err != nil {
		return api.Container{}, err
	}
	if req.IP != "" {
		// The address may belong to a container removed a moment ago that is still detaching.
		if err := a.waitTeardowns(ctx); err != nil {
			return api.Container{}, err
		}
	}
	var names []string
	if userDefined(netName) && rec.State.Status == api.StateRunning {
		names = endpointNames(rec.Name, hostnameOf(rec), req.Aliases)
	}
	ep, err := a.cfg.Drivers[dname].Attach(ctx, driver.AttachRequest{Network: netName, Container: rec.ID, Name: rec.Name, Netns: netns, IP: req.IP, Names: names})
	if err != nil {
		return api.Container{}, err
	}
	ep.Aliases = req.Aliases
	c.mu.Lock()
	c.rec.Networks = append(c.rec.Networks, ep)
	c.mu.Unlock()
	if err := a.saveRecord(c); err != nil {
		return api.Container{}, err
	}
	a.connected(ctx, rec, c.snapshot())
	return c.snapshot(), nil
}

// Disconnect detaches a container from a network.
func (a *Agent) Disconnect(ctx context.Context, netName string, req api.NetworkConnect) (api.Container, error) {
	c, err := a.lookup(req.Container)
	if err != nil {
		return api.Container{}, err
	}
	c.ops.Lock()
	defer c.ops.Unlock()
	rec := c.snapshot()
	idx := -1
	for i, ep := range rec.Networks {
		if ep.Network == netName {
			idx = i
		}
	}
	if idx < 0 || strings.HasPrefix(rec.Config.Network, api.NetworkModeContainer) {
		return api.Container{}, fmt.Errorf("container %s is not connected to network %q: %w", rec.Name, netName, errdefs.ErrNotFound)
	}
	ep := rec.Networks[idx]
	if d, ok := a.cfg.Drivers[ep.Driver]; ok {
		if err := d.Detach(ctx, netName, rec.ID); err != nil {
			return api.Container{}, err
		}
	}
	if a.cfg.Names != nil {
		a.cfg.Names.Remove(netName, rec.ID)
	}
	c.mu.Lock()
	c.rec.Networks = append(append([]api.ContainerEndpoint(nil), c.rec.Networks[:idx]...), c.rec.Networks[idx+1:]...)
	c.mu.Unlock()
	if a.cfg.Resolver != nil {
		a.cfg.Resolver.SetNetworks(rec.ID, dnsNetworks(c.snapshot()))
	}
	if err := a.saveRecord(c); err != nil {
		return api.Container{}, err
	}
	return c.snapshot(), nil
}
