package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/dns"
)

// The agent's part of service discovery (docs/dns.md): the resolv.conf of each container, the names
// of its local containers in the table, and the resolver's clients. The overlay driver puts the names
// of other hosts' endpoints in the same table.

// Resolver serves the embedded name service in containers' namespaces (*dns.Server).
type Resolver interface {
	// Add starts serving a container (or updates it); it must be called before its process starts.
	Add(ctx context.Context, c dns.Client) error
	SetNetworks(container string, networks []string)
	Remove(container string)
}

var _ Resolver = (*dns.Server)(nil)

// endpointNamer is implemented by drivers whose endpoints carry their names to other hosts (overlay):
// the agent empties them while the container is stopped, so that no host resolves it, and gives them
// back when it starts again.
type endpointNamer interface {
	SetNames(ctx context.Context, network, container string, names []string) error
}

// embeddedDNS reports whether a container in mode gets the resolver: on a user-defined network (not
// the default bridge network, as Docker), when the agent runs one.
func (a *Agent) embeddedDNS(m netMode) bool {
	return a.cfg.Resolver != nil && a.cfg.Names != nil && m.kind == modeNetwork && userDefined(m.network)
}

// userDefined reports whether a network's containers find each other by name: every network but
// the default bridge network.
func userDefined(network string) bool { return network != api.NetworkModeDefault }

// resolvConfFor returns the resolv.conf of a new container: the resolver's for user-defined networks,
// the target's for container:NAME, else the host's with --dns, --dns-search and --dns-option applied.
func (a *Agent) resolvConfFor(req api.ContainerCreate, m netMode) []byte {
	if m.kind == modeContainer {
		if b, err := os.ReadFile(filepath.Join(a.bundleDir(m.other.snapshot().ID), "resolv.conf")); err == nil {
			return b
		}
	}
	host, _ := os.ReadFile(a.cfg.HostResolvConf)
	return renderResolvConf(host, req, a.embeddedDNS(m))
}

// renderResolvConf is a container's resolv.conf made from the host's. With the embedded resolver it
// names 127.0.0.11 only (the resolver forwards to --dns or the host's servers), with --dns-search and
// --dns-option or else the host's search and options lines, and ndots:0 unless an ndots option is
// given (as Docker). Without it, the host's file is copied as it is unless --dns, --dns-search or
// --dns-option replace its lines.
func renderResolvConf(host []byte, req api.ContainerCreate, embedded bool) []byte {
	servers, search, options := parseResolvConf(host)
	if !embedded && len(req.DNS) == 0 && len(req.DNSSearch) == 0 && len(req.DNSOptions) == 0 {
		return host
	}
	if len(req.DNS) > 0 {
		servers = req.DNS
	}
	if embedded {
		servers = []string{dns.Address}
	}
	if len(req.DNSSearch) > 0 {
		search = nil
		for _, s := range req.DNSSearch {
			if s != "." { // "." asks for no search domain
				search = append(search, strings.TrimSuffix(s, "."))
			}
		}
	}
	if len(req.DNSOptions) > 0 {
		options = req.DNSOptions
	}
	if embedded && !slices.ContainsFunc(options, func(o string) bool { return strings.HasPrefix(o, "ndots:") }) {
		options = append([]string{"ndots:0"}, options...)
	}
	var b bytes.Buffer
	for _, s := range servers {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	if len(options) > 0 {
		b.WriteString("options " + strings.Join(options, " ") + "\n")
	}
	return b.Bytes()
}

// parseResolvConf returns the nameservers, search domains and options of a resolv.conf (the last
// search or domain line wins, as in glibc).
func parseResolvConf(b []byte) (servers, search, options []string) {
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1])
		case "search", "domain":
			search = f[1:]
		case "options":
			options = append(options, f[1:]...)
		}
	}
	return servers, search, options
}

// endpointNames are a container's DNS names on one network: its name, its hostname and its aliases
// there, without duplicates (case does not matter) and without what is not a DNS name (a container
// name may end with a dot), at most api.MaxEndpointNames. The 12-digit ID is the table's to derive.
func endpointNames(name, hostname string, aliases []string) []string {
	var out []string
	for _, n := range append([]string{name, hostname}, aliases...) {
		if !api.ValidDNSName(n) || len(out) == api.MaxEndpointNames ||
			slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, n) }) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// hostnameOf is the hostname a container was given (its short ID unless --hostname).
func hostnameOf(rec api.Container) string {
	if rec.Config.Hostname != "" {
		return rec.Config.Hostname
	}
	return api.ShortID(rec.ID)
}

// dnsEndpoints are the endpoints of rec whose network has a name service: those of its own
// namespace (a container:NAME container has none of its own) on user-defined networks.
func dnsEndpoints(rec api.Container) []api.ContainerEndpoint {
	if strings.HasPrefix(rec.Config.Network, api.NetworkModeContainer) || rec.Config.Network == modeHost {
		return nil
	}
	var out []api.ContainerEndpoint
	for _, ep := range rec.Networks {
		if userDefined(ep.Network) {
			out = append(out, ep)
		}
	}
	return out
}

func dnsNetworks(rec api.Container) []string {
	var out []string
	for _, ep := range dnsEndpoints(rec) {
		out = append(out, ep.Network)
	}
	return out
}

// setNames puts rec's names in the table, on each of its user-defined networks with that network's
// aliases (a name is answered only to containers that share the network it is held on).
func (a *Agent) setNames(rec api.Container) {
	if a.cfg.Names == nil {
		return
	}
	for _, ep := range dnsEndpoints(rec) {
		ip, err := netip.ParseAddr(ep.IP)
		if err != nil {
			continue
		}
		a.cfg.Names.Set(dns.Record{Network: ep.Network, Container: rec.ID, IP: ip, Names: endpointNames(rec.Name, hostnameOf(rec), ep.Aliases)})
	}
}

// removeNames takes rec's names out of the table, on every network it is on.
func (a *Agent) removeNames(rec api.Container) {
	if a.cfg.Names == nil {
		return
	}
	for _, ep := range rec.Networks {
		a.cfg.Names.Remove(ep.Network, rec.ID)
	}
}

// serve makes the resolver answer in rec's namespace (before its process starts): from its
// user-defined networks, forwarding to its --dns servers (else the host's), not at all when every one
// of its networks is --internal.
func (a *Agent) serve(ctx context.Context, rec api.Container) error {
	c, ok := a.dnsClient(ctx, rec)
	if !ok {
		return nil
	}
	return a.addAndKeep(ctx, c)
}

// addAndKeep serves c on new sockets and gives copies to its shim to keep.
func (a *Agent) addAndKeep(ctx context.Context, c dns.Client) error {
	if err := a.cfg.Resolver.Add(ctx, c); err != nil {
		return err
	}
	a.keepSockets(ctx, c.Container)
	return nil
}

// dnsClient is what the resolver serves for rec; false when it does not serve rec.
func (a *Agent) dnsClient(ctx context.Context, rec api.Container) (dns.Client, bool) {
	nets := dnsNetworks(rec)
	if a.cfg.Resolver == nil || len(nets) == 0 || rec.NetNS == "" {
		return dns.Client{}, false
	}
	c := dns.Client{Container: rec.ID, Netns: rec.NetNS, Networks: nets, NoForward: a.allInternal(ctx, dnsEndpoints(rec))}
	for _, s := range rec.Config.DNS {
		if ip, err := netip.ParseAddr(s); err == nil {
			c.Upstreams = append(c.Upstreams, netip.AddrPortFrom(ip, 53))
		}
	}
	return c, true
}

// allInternal reports whether the network of every one of eps is --internal (nothing leaves the
// cluster). It asks only the drivers of those networks (a bridge network's container does not wait
// for an unreachable controller).
func (a *Agent) allInternal(ctx context.Context, eps []api.ContainerEndpoint) bool {
	internal := map[string]bool{}
	asked := map[string]bool{}
	for _, ep := range eps {
		d, ok := a.cfg.Drivers[ep.Driver]
		if !ok || asked[ep.Driver] {
			continue
		}
		asked[ep.Driver] = true
		if ns, err := d.Networks(ctx); err == nil {
			for _, n := range ns {
				internal[n.Name] = n.Internal
			}
		}
	}
	for _, ep := range eps {
		if !internal[ep.Network] {
			return false
		}
	}
	return len(eps) > 0
}

// unserve stops the resolver answering in a removed container's namespace.
func (a *Agent) unserve(id string) {
	if a.cfg.Resolver != nil {
		a.cfg.Resolver.Remove(id)
	}
}

// publishNames gives rec's overlay endpoints their names (running) or none (stopped) on the other
// hosts, through drivers that carry them. A failure is logged: the driver retries.
func (a *Agent) publishNames(ctx context.Context, rec api.Container, running bool) {
	for _, ep := range dnsEndpoints(rec) {
		n, ok := a.cfg.Drivers[ep.Driver].(endpointNamer)
		if !ok {
			continue
		}
		var names []string
		if running {
			names = endpointNames(rec.Name, hostnameOf(rec), ep.Aliases)
		}
		if err := n.SetNames(ctx, ep.Network, rec.ID, names); err != nil {
			a.log.Warn("publish the names of an endpoint", "container", api.ShortID(rec.ID), "network", ep.Network, "err", err)
		}
	}
}

// namesStarted follows a container's start (monitor follows its exit): its names resolve only while
// it runs, on this host at once and on the others as soon as the driver carried the change.
func (a *Agent) namesStarted(ctx context.Context, rec api.Container) {
	a.setNames(rec)
	a.publishNames(ctx, rec, true)
}

// restoreNames serves a container found at start-up again and puts its names back (running), or makes
// sure they are gone (exited while the agent was away).
func (a *Agent) restoreNames(ctx context.Context, rec api.Container) {
	if rec.Quarantine != "" {
		return
	}
	// An exited container is served too (from the sockets its shim kept), so that it finds names
	// again when it is started (docs/restart.md).
	if err := a.reserve(ctx, rec); err != nil {
		a.log.Warn("serve names in a container found at start-up", "container", api.ShortID(rec.ID), "err", err)
	}
	if stopped(rec.State.Status) {
		a.publishNames(ctx, rec, false) // it may have exited while the agent was away
		return
	}
	a.namesStarted(ctx, rec)
}

// connected follows a network connect (old: the record before, now: after): the resolver answers the
// container from its networks now (served from now on if it was not), and its names on the new
// network resolve while it runs.
func (a *Agent) connected(ctx context.Context, old, now api.Container) {
	if a.cfg.Resolver != nil {
		if len(dnsNetworks(old)) > 0 {
			a.cfg.Resolver.SetNetworks(now.ID, dnsNetworks(now))
		} else if err := a.serve(ctx, now); err != nil {
			a.log.Warn("serve names in a connected container", "container", api.ShortID(now.ID), "err", err)
		}
	}
	if now.State.Status == api.StateRunning {
		a.setNames(now)
	}
}

// restoreAllNames serves the containers found at start-up again and puts back the names of those
// that run, so that names keep resolving across an agent restart.
func (a *Agent) restoreAllNames() {
	cs := a.containerList()
	// The names first: queries that waited in kept sockets are answered as soon as they are served.
	for _, c := range cs {
		if rec := c.snapshot(); rec.Quarantine == "" && !stopped(rec.State.Status) {
			a.setNames(rec)
		}
	}
	for _, c := range cs {
		a.restoreNames(a.ctx, c.snapshot())
	}
}

// attached completes a new container's record (c is not shared yet) with its pid and endpoints
// (the --network-alias values on its network), makes the resolver serve it and puts its names in the
// table, each undone by u.
func (a *Agent) attached(ctx context.Context, c *container, pid int, eps []api.ContainerEndpoint, m netMode, u *undo) error {
	c.rec.State.Pid = pid
	c.rec.Networks = eps
	if m.kind == modeNetwork && len(eps) == 1 {
		c.rec.Networks[0].Aliases = c.rec.Config.NetworkAliases
	}
	if err := a.serve(ctx, c.rec); err != nil {
		return fmt.Errorf("container %s: serve names in its namespace: %w", api.ShortID(c.rec.ID), err)
	}
	rec := c.rec
	u.add(func() { a.unserve(rec.ID); a.removeNames(rec) })
	a.setNames(rec)
	return nil
}
