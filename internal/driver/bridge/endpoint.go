package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ipam"
	"github.com/ovnet/ov/internal/netlink"
)

// sortedEndpoints returns the endpoints by network, then container.
func (d *Driver) sortedEndpoints() []*Endpoint {
	out := make([]*Endpoint, 0, len(d.st.Endpoints))
	for _, e := range d.st.Endpoints {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Network != out[j].Network {
			return out[i].Network < out[j].Network
		}
		return out[i].Container < out[j].Container
	})
	return out
}

// Endpoints returns the endpoints of network (every network when network is ""), by network and
// container.
func (d *Driver) Endpoints(network string) []Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Endpoint
	for _, e := range d.sortedEndpoints() {
		if network == "" || e.Network == network {
			c := *e
			c.Ports = slices.Clone(e.Ports)
			out = append(out, c)
		}
	}
	return out
}

// Attach gives the container an interface on the network: a veth pair whose host end is a port of the
// bridge and whose container end is eth0 (eth1, ... for further networks: `network connect`), an address
// from the network's range, a MAC derived from it, a default route via the gateway on eth0, and the
// published ports. Attaching again returns the same endpoint and repairs what is missing (after a crash).
// Errors: unknown network errdefs.ErrNotFound; --ip outside the range errdefs.ErrInvalidArgument; --ip
// or a host port held by another container errdefs.ErrConflict.
func (d *Driver) Attach(ctx context.Context, req driver.AttachRequest) (api.ContainerEndpoint, error) {
	if req.Container == "" || req.Netns == "" {
		return api.ContainerEndpoint{}, errorf(errdefs.ErrInvalidArgument, "attach to network %q: container ID and namespace path are required", req.Network)
	}
	ip, ports, err := parseAttach(req)
	if err != nil {
		return api.ContainerEndpoint{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, err := d.attach(req, ip, ports)
	if err != nil {
		return api.ContainerEndpoint{}, err
	}
	return e.toAPI(), nil
}

// parseAttach reads the static address and the published ports of a request.
func parseAttach(req driver.AttachRequest) (netip.Addr, []api.PortSpec, error) {
	var ip netip.Addr
	if req.IP != "" {
		a, err := netip.ParseAddr(req.IP)
		if err != nil || !a.Is4() {
			return netip.Addr{}, nil, errorf(errdefs.ErrInvalidArgument, "container %s: static address %q is not an IPv4 address", req.Container, req.IP)
		}
		ip = a
	}
	var ports []api.PortSpec
	for _, p := range req.Ports {
		m := api.PortSpec{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Proto: p.Protocol}
		if p.HostIP != "" {
			a, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return netip.Addr{}, nil, errorf(errdefs.ErrInvalidArgument, "published port %s: host address %q is not an IP address", p, p.HostIP)
			}
			if !a.IsUnspecified() {
				m.HostIP = a
			}
		}
		ports = append(ports, m)
	}
	return ip, ports, nil
}

// attach is Attach with d.mu held and the request parsed: it records the endpoint and builds it.
func (d *Driver) attach(req driver.AttachRequest, ip netip.Addr, ports []api.PortSpec) (*Endpoint, error) {
	n, ok := d.st.Networks[req.Network]
	if !ok {
		return nil, errorf(errdefs.ErrNotFound, "network %q not found; create it with `ovctl network create %s` or pick one from `ovctl network ls`", req.Network, req.Network)
	}
	if n.Internal && len(ports) > 0 {
		return nil, errorf(errdefs.ErrInvalidArgument, "network %q is internal: it cannot publish ports (-p); use another network", n.Name)
	}
	if err := d.checkNetns(req.Netns); err != nil {
		return nil, errorf(errdefs.ErrNotFound, "container %s: network namespace %s: %v", req.Container, req.Netns, err)
	}
	key := endpointKey(n.Name, req.Container)
	if err := d.checkPorts(key, ports); err != nil {
		return nil, err
	}
	if err := d.ensureGuard(); err != nil {
		return nil, fmt.Errorf("container %s: attach to network %q: %w", req.Container, n.Name, err)
	}
	old := d.st.Endpoints[key]
	want := ip
	if old != nil && !want.IsValid() {
		want = old.IP()
	}
	r, err := ipam.ParseRange(n.Subnet.String(), n.Gateway.String(), prefixString(n.IPRange))
	if err != nil {
		return nil, fmt.Errorf("network %q: %w", n.Name, err)
	}
	ip, err = d.ipam.Allocate(n.Name, r, req.Container, want)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", req.Container, err)
	}
	e := &Endpoint{Network: n.Name, Container: req.Container, Netns: req.Netns,
		HostIf: vethName(n.ID, req.Container), Address: netip.PrefixFrom(ip, n.Subnet.Bits()),
		Gateway: n.Gateway, MAC: macFor(ip), Ports: slices.Clone(ports)}
	if old != nil && old.Netns == req.Netns {
		e.IfName = old.IfName
	} else if e.IfName, err = d.nextIfName(req.Netns, req.Container); err != nil {
		d.releaseNew(old, n.Name, req.Container)
		return nil, err
	}
	e.DefaultRoute = e.IfName == "eth0"
	d.st.Endpoints[key] = e
	err = d.st.save(d.statePath)
	if err == nil {
		err = d.ensureBridge(n)
	}
	if err == nil {
		err = d.ensureVeth(e, n.Bridge, n.MTU)
	}
	if err != nil {
		if old == nil {
			delete(d.st.Endpoints, key)
			_ = d.deleteVeth(e.HostIf)
			_ = d.ipam.Release(n.Name, req.Container)
		} else {
			d.st.Endpoints[key] = old
		}
		_ = d.st.save(d.statePath)
		_ = d.ensureLocalnet(n)
		return nil, fmt.Errorf("container %s: attach to network %q: %w", req.Container, n.Name, err)
	}
	if err := d.syncChangedRules(); err != nil {
		return nil, fmt.Errorf("container %s: network %q: iptables: %w", req.Container, n.Name, err)
	}
	d.log.Info("endpoint attached", "network", n.Name, "container", req.Container, "ip", ip.String(), "if", e.IfName)
	return e, nil
}

// toAPI is the endpoint as the agent's API shows it.
func (e *Endpoint) toAPI() api.ContainerEndpoint {
	return api.ContainerEndpoint{Network: e.Network, Driver: api.DriverBridge, Interface: e.IfName, IP: e.IP().String(),
		PrefixLen: e.Address.Bits(), Gateway: e.Gateway.String(), MAC: e.MAC}
}

func (d *Driver) releaseNew(old *Endpoint, network, container string) {
	if old == nil {
		_ = d.ipam.Release(network, container)
	}
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// checkPorts refuses host ports that another endpoint publishes, or that the request lists twice.
func (d *Driver) checkPorts(key string, ports []api.PortSpec) error {
	for i, p := range ports {
		if p.HostPort == 0 || p.ContainerPort == 0 || (p.Proto != "tcp" && p.Proto != "udp") {
			return errorf(errdefs.ErrInvalidArgument, "invalid published port %s; %s", p, api.PortSpecUsage)
		}
		for _, q := range ports[:i] {
			if q.Clashes(p) {
				return errorf(errdefs.ErrInvalidArgument, "invalid -p %q: host port %d/%s is already published by -p %q; publish each host port once", p.String(), p.HostPort, p.Proto, q.String())
			}
		}
		for _, e := range d.sortedEndpoints() {
			if endpointKey(e.Network, e.Container) == key {
				continue
			}
			for _, q := range e.Ports {
				if q.Clashes(p) {
					return errorf(errdefs.ErrConflict, "-p %s: host port %d/%s is already published by container %s (-p %s on network %q); choose another host port", p, p.HostPort, p.Proto, e.Container, q, e.Network)
				}
			}
		}
	}
	return nil
}

// nextIfName returns the first ethN that neither exists in the namespace nor is recorded for the
// container.
func (d *Driver) nextIfName(netns, container string) (string, error) {
	names, err := netlink.LinkNames(d.nl, netns)
	if err != nil {
		return "", fmt.Errorf("container %s: list interfaces of %s: %w", container, netns, err)
	}
	for _, e := range d.st.Endpoints {
		if e.Container == container && e.Netns == netns {
			names = append(names, e.IfName)
		}
	}
	for i := 0; ; i++ {
		n := fmt.Sprintf("eth%d", i)
		if !slices.Contains(names, n) {
			return n, nil
		}
	}
}

// vethName is the host end of a container's veth on a network: stable, so a retry finds it.
func vethName(networkID, container string) string {
	h := sha256.Sum256([]byte(networkID + "/" + container))
	return "veth" + hex.EncodeToString(h[:])[:10]
}

// macFor derives a locally administered MAC from an IPv4 address: 02:42:a:b:c:d, like Docker.
func macFor(ip netip.Addr) string {
	a := ip.As4()
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3])
}

// Detach removes the container's interface from the network, its published ports and its address.
// Detaching what is not attached (or whose namespace is already gone) is not an error.
func (d *Driver) Detach(ctx context.Context, network, container string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.detach(network, container)
}

func (d *Driver) detach(network, container string) error {
	key := endpointKey(network, container)
	e := d.st.Endpoints[key]
	hostIf := ""
	if e != nil {
		hostIf = e.HostIf
	} else if n := d.st.Networks[network]; n != nil {
		hostIf = vethName(n.ID, container)
	}
	if hostIf != "" {
		if err := d.deleteVeth(hostIf); err != nil {
			return fmt.Errorf("container %s: detach from network %q: %w", container, network, err)
		}
	}
	if e != nil {
		delete(d.st.Endpoints, key)
		if err := d.st.save(d.statePath); err != nil {
			d.st.Endpoints[key] = e
			return err
		}
	}
	defer func() {
		// After the rules are gone: no new flow can be tracked towards the address any more.
		if e != nil {
			if err := d.flushConntrack(e.IP()); err != nil {
				d.log.Warn("cannot flush conntrack entries", "ip", e.IP().String(), "err", err)
			}
		}
	}()
	if err := d.ipam.Release(network, container); err != nil {
		return fmt.Errorf("container %s: release address on network %q: %w", container, network, err)
	}
	if err := d.syncChangedRules(); err != nil {
		return fmt.Errorf("container %s: network %q: iptables: %w", container, network, err)
	}
	// After the DNAT rules are gone: the last port on 127.0.0.1 may have left with the endpoint.
	if n := d.st.Networks[network]; n != nil && e != nil && len(e.Ports) > 0 {
		if err := d.ensureLocalnet(n); err != nil {
			return fmt.Errorf("container %s: network %q: %w", container, network, err)
		}
	}
	if e != nil {
		d.log.Info("endpoint detached", "network", network, "container", container)
	}
	return nil
}

// DetachAll detaches the container from every network it is attached to.
func (d *Driver) DetachAll(ctx context.Context, container string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, e := range d.sortedEndpoints() {
		if e.Container == container {
			errs = append(errs, d.detach(e.Network, container))
		}
	}
	return errors.Join(errs...)
}

var _ driver.Pruner = (*Driver)(nil)

// Prune implements driver.Pruner: it detaches the endpoints of containers known reports unknown and
// removes their namespaces (when under NetnsDir).
func (d *Driver) Prune(ctx context.Context, known func(string) bool) error {
	var errs []error
	seen := map[string]bool{}
	for _, e := range d.Endpoints("") {
		if known(e.Container) || seen[e.Container] {
			continue
		}
		seen[e.Container] = true
		errs = append(errs, d.DetachAll(ctx, e.Container))
		if e.Netns == d.NetnsPath(e.Container) {
			errs = append(errs, d.RemoveNetns(ctx, e.Container))
		}
	}
	return errors.Join(errs...)
}
