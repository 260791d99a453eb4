package bridge

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ipam"
	"github.com/ovnet/ov/internal/iptables"
)

// hostRoute is an IPv4 route of the host's main table.
type hostRoute struct {
	Dst netip.Prefix
	Dev string
}

// kernel is what the driver needs from the host's network stack (the netns of the calling process).
// Every method is idempotent.
type kernel interface {
	// routes lists the IPv4 routes of the main table that have a destination prefix (no default route).
	routes() ([]hostRoute, error)
	// uplinkMTU returns the MTU of the default route's interface, or 0 when there is no default route.
	uplinkMTU() (int, error)
	// ensureBridge makes bridge `name` exist, up, with exactly address addr and the MTU; it also enables
	// IPv4 forwarding and route_localnet on the bridge.
	ensureBridge(name string, addr netip.Prefix, mtu int) error
	// deleteBridge deletes the bridge; a missing one is not an error.
	deleteBridge(name string) error
	// bridges lists the names of the host's bridge devices.
	bridges() ([]string, error)
	// ensureNetns makes path a bind-mounted network namespace (created if missing) with lo up.
	ensureNetns(path string) error
	// deleteNetns unmounts and removes path; a missing one is not an error.
	deleteNetns(path string) error
	// checkNetns tells whether path is a network namespace (errdefs.ErrNotFound if not).
	checkNetns(path string) error
	// linkNames lists the interfaces of the namespace at path.
	linkNames(path string) ([]string, error)
	// ensureVeth makes the endpoint's veth exist and match e (host end on bridge, container end named
	// e.IfName with e.Address, e.MAC, the MTU, and a default route when e.DefaultRoute).
	ensureVeth(e *Endpoint, bridge string, mtu int) error
	// deleteVeth deletes the host end (and so the pair); a missing one is not an error.
	deleteVeth(hostIf string) error
	// flushConntrack deletes the connection-tracking entries of flows from or to ip (DNATed ones
	// included), so a published UDP port does not keep sending to an address that left.
	flushConntrack(ip netip.Addr) error
}

// Driver manages the local networks of one host. Its methods are safe for concurrent use; they are
// serialised by one mutex (each takes milliseconds).
type Driver struct {
	cfg       Config
	log       *slog.Logger
	ipt       iptables.Client
	ipam      Allocator
	k         kernel
	statePath string

	mu sync.Mutex
	st *state
	// applied is the rendering (ruleSet.String) of the rules last written in full by syncRules; ""
	// when unknown (none written yet, or the last write failed).
	applied string
}

// New loads the driver's state. It changes nothing on the host: call Reconcile to build the default
// network, the bridges and the iptables rules (at start-up, and periodically if you like).
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, log: cfg.Log, ipt: cfg.IPTables, ipam: cfg.IPAM, k: cfg.kernel,
		statePath: filepath.Join(cfg.StateDir, "bridge.json")}
	if d.log == nil {
		d.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d.log = d.log.With("component", "network")
	var err error
	if d.ipt == nil {
		if d.ipt, err = iptables.NewTables(); err != nil {
			return nil, err
		}
	}
	if d.ipam == nil {
		if d.ipam, err = ipam.NewLocal(filepath.Join(cfg.StateDir, "ipam.json")); err != nil {
			return nil, err
		}
	}
	if d.k == nil {
		if d.k, err = newKernel(); err != nil {
			return nil, err
		}
	}
	if d.st, err = loadState(d.statePath); err != nil {
		return nil, err
	}
	return d, nil
}

// CreateRequest asks for a bridge network. Empty Subnet picks one from the address pools; empty
// Gateway is the first address of the subnet; empty IPRange is the whole subnet; MTU 0 is Config.MTU.
type CreateRequest = api.Network

// CreateNetwork creates a bridge network: its bridge, its address range and its iptables rules.
// A name in use is errdefs.ErrAlreadyExists; a subnet that overlaps another network or a host route is
// errdefs.ErrConflict naming both.
func (d *Driver) CreateNetwork(ctx context.Context, req CreateRequest) (Network, error) {
	if req.Driver == "" {
		req.Driver = api.DriverBridge
	}
	if req.Driver != api.DriverBridge {
		return Network{}, errorf(errdefs.ErrInvalidArgument, "network %q: the local driver makes bridge networks, not %q", req.Name, req.Driver)
	}
	if err := req.Validate(); err != nil {
		return Network{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.st.Networks[req.Name]; ok {
		return Network{}, errorf(errdefs.ErrAlreadyExists, "network %q already exists; choose another name or remove it first", req.Name)
	}
	id := newID()
	n, err := d.newNetwork(req, id, "ov-"+id[:12])
	if err != nil {
		return Network{}, err
	}
	if err := d.addNetwork(n); err != nil {
		return Network{}, err
	}
	d.log.Info("network created", "network", n.Name, "bridge", n.Bridge, "subnet", n.Subnet.String())
	return *n, nil
}

// isUserBridge reports whether name has the form of a user-defined network's bridge: "ov-" and 12 hex
// digits.
func isUserBridge(name string) bool {
	return len(name) == 15 && strings.HasPrefix(name, "ov-") && isHex(name[3:])
}

// newNetwork checks and completes a request: subnet (given or picked), gateway, ip-range, MTU.
func (d *Driver) newNetwork(req CreateRequest, id, bridge string) (*Network, error) {
	subnet := req.Subnet
	if subnet == "" {
		p, err := d.pickSubnet()
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", req.Name, err)
		}
		subnet = p.String()
	}
	r, err := ipam.ParseRange(subnet, req.Gateway, req.IPRange)
	if err != nil {
		return nil, fmt.Errorf("network %q: %w", req.Name, err)
	}
	if err := d.checkSubnet(req.Name, r.Subnet); err != nil {
		return nil, err
	}
	n := &Network{Name: req.Name, ID: id, Bridge: bridge, Subnet: r.Subnet, Gateway: r.Gateway,
		MTU: req.MTU, Internal: req.Internal, Labels: req.Labels, Created: time.Now().UTC()}
	if req.IPRange != "" {
		n.IPRange = netip.MustParsePrefix(req.IPRange)
	}
	if n.MTU == 0 {
		n.MTU = d.cfg.MTU
	}
	if n.MTU == 0 {
		mtu, err := d.k.uplinkMTU()
		if err != nil {
			return nil, fmt.Errorf("network %q: derive the MTU from the host's default route: %w (set --mtu)", req.Name, err)
		}
		n.MTU = cmp.Or(mtu, 1500)
	}
	return n, nil
}

// addNetwork records n and builds it; on failure it leaves nothing behind.
func (d *Driver) addNetwork(n *Network) error {
	d.st.Networks[n.Name] = n
	err := d.st.save(d.statePath)
	if err == nil {
		err = d.k.ensureBridge(n.Bridge, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()), n.MTU)
	}
	if err == nil {
		err = d.syncRules()
	}
	if err != nil {
		delete(d.st.Networks, n.Name)
		_ = d.k.deleteBridge(n.Bridge)
		_ = d.syncRules()
		if serr := d.st.save(d.statePath); serr != nil {
			d.log.Error("cannot save state after failed create", "network", n.Name, "err", serr)
		}
		return fmt.Errorf("network %q: build bridge %s: %w", n.Name, n.Bridge, err)
	}
	return nil
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sortedNetworks returns the networks by name.
func (d *Driver) sortedNetworks() []*Network {
	out := make([]*Network, 0, len(d.st.Networks))
	for _, n := range d.st.Networks {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

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

// foreignRoutes returns the host's routes that are not on one of the driver's bridges.
func (d *Driver) foreignRoutes() ([]hostRoute, error) {
	rs, err := d.k.routes()
	if err != nil {
		return nil, fmt.Errorf("list the host's routes: %w", err)
	}
	ours := map[string]bool{}
	for _, n := range d.st.Networks {
		ours[n.Bridge] = true
	}
	var out []hostRoute
	for _, r := range rs {
		if !ours[r.Dev] && r.Dst.Bits() > 0 {
			out = append(out, r)
		}
	}
	return out, nil
}

// checkSubnet refuses a subnet that overlaps another network or a route of the host.
func (d *Driver) checkSubnet(name string, p netip.Prefix) error {
	for _, o := range d.sortedNetworks() {
		if o.Name != name && o.Subnet.Overlaps(p) {
			return errorf(errdefs.ErrConflict, "network %q: subnet %s overlaps network %q (%s); choose another --subnet", name, p, o.Name, o.Subnet)
		}
	}
	rs, err := d.foreignRoutes()
	if err != nil {
		return fmt.Errorf("network %q: %w", name, err)
	}
	for _, r := range rs {
		if r.Dst.Overlaps(p) {
			return errorf(errdefs.ErrConflict, "network %q: subnet %s overlaps the host's route to %s (dev %s); choose another --subnet", name, p, r.Dst, r.Dev)
		}
	}
	return nil
}

// pickSubnet returns the first pool subnet that overlaps no network and no route of the host.
func (d *Driver) pickSubnet() (netip.Prefix, error) {
	rs, err := d.foreignRoutes()
	if err != nil {
		return netip.Prefix{}, err
	}
	var avoid []netip.Prefix
	for _, n := range d.st.Networks {
		avoid = append(avoid, n.Subnet)
	}
	for _, r := range rs {
		avoid = append(avoid, r.Dst)
	}
	for _, pool := range d.cfg.AddressPools {
		if p, err := ipam.PickSubnet(pool.Base, pool.Size, avoid); err == nil {
			return p, nil
		}
	}
	return netip.Prefix{}, errorf(errdefs.ErrExhausted, "every subnet of the address pools overlaps a network or a route of this host; give --subnet explicitly")
}

// DeleteNetwork removes a network: its rules, its bridge and its address state. A network with
// containers attached is errdefs.ErrConflict; the default network cannot be removed; an unknown network is
// errdefs.ErrNotFound.
func (d *Driver) DeleteNetwork(ctx context.Context, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.st.Networks[name]
	if !ok {
		return errorf(errdefs.ErrNotFound, "network %q not found", name)
	}
	if name == DefaultNetwork && d.cfg.DefaultBridge != "" {
		return errorf(errdefs.ErrInvalidArgument, "network %q is the default network and cannot be removed", name)
	}
	var users []string
	for _, e := range d.sortedEndpoints() {
		if e.Network == name {
			users = append(users, e.Container)
		}
	}
	if len(users) > 0 {
		return errorf(errdefs.ErrConflict, "network %q has %d containers attached (%s); disconnect or remove them first", name, len(users), strings.Join(users, ", "))
	}
	delete(d.st.Networks, name)
	if err := d.st.save(d.statePath); err != nil {
		d.st.Networks[name] = n
		return err
	}
	if err := d.syncRules(); err != nil {
		return fmt.Errorf("network %q: remove its iptables rules: %w (Reconcile retries)", name, err)
	}
	if err := d.k.deleteBridge(n.Bridge); err != nil {
		return fmt.Errorf("network %q: delete bridge %s: %w", name, n.Bridge, err)
	}
	if err := d.ipam.DropNetwork(name); err != nil {
		return fmt.Errorf("network %q: drop its addresses: %w", name, err)
	}
	d.log.Info("network deleted", "network", name, "bridge", n.Bridge)
	return nil
}

// Network returns a network by name, or errdefs.ErrNotFound.
func (d *Driver) Network(name string) (Network, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.st.Networks[name]
	if !ok {
		return Network{}, errorf(errdefs.ErrNotFound, "network %q not found", name)
	}
	return *n, nil
}

// Networks returns every bridge network, by name.
func (d *Driver) Networks() []Network {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Network
	for _, n := range d.sortedNetworks() {
		out = append(out, *n)
	}
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

// NetnsPath is where the network namespace of a container lives (Config.NetnsDir/<container>).
func (d *Driver) NetnsPath(container string) string {
	return filepath.Join(d.cfg.NetnsDir, container)
}

// CreateNetns makes the container's network namespace (bind-mounted at NetnsPath, with lo up) and
// returns its path; it is what the runtime joins. Creating an existing one returns it unchanged. Use it
// for bridge networks and for --network none.
func (d *Driver) CreateNetns(ctx context.Context, container string) (string, error) {
	if !validID(container) {
		return "", errorf(errdefs.ErrInvalidArgument, "container ID %q cannot name a namespace file; use letters, digits, '_', '.' or '-'", container)
	}
	p := d.NetnsPath(container)
	if err := d.k.ensureNetns(p); err != nil {
		return "", fmt.Errorf("container %s: create network namespace %s: %w", container, p, err)
	}
	return p, nil
}

// RemoveNetns unmounts and removes the container's network namespace; a missing one is not an error.
// Detach (or DetachAll) first to release the container's addresses.
func (d *Driver) RemoveNetns(ctx context.Context, container string) error {
	if !validID(container) {
		return errorf(errdefs.ErrInvalidArgument, "container ID %q cannot name a namespace file", container)
	}
	return d.k.deleteNetns(d.NetnsPath(container))
}

// CheckNetns validates the namespace a --network container:NAME joins: path must be a network namespace
// (a file under NetnsDir or /proc/PID/ns/net). Nothing is built for that mode.
func (d *Driver) CheckNetns(path string) error {
	if err := d.k.checkNetns(path); err != nil {
		return errorf(errdefs.ErrNotFound, "network namespace %s: %v; is the container running?", path, err)
	}
	return nil
}

func validID(s string) bool {
	return api.ValidName(s) || (len(s) == 64 && isHex(s))
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// AttachRequest connects a container's namespace to a bridge network.
type AttachRequest struct {
	Network   string         // network name
	Container string         // container ID: owns the address and names the endpoint
	Netns     string         // path of the container's network namespace (CreateNetns)
	IP        netip.Addr     // --ip; the zero Addr takes the next free address
	Ports     []api.PortSpec // published ports (-p)
}

// Attach gives the container an interface on the network: a veth pair whose host end is a port of the
// bridge and whose container end is eth0 (eth1, ... for further networks: `network connect`), an address
// from the network's range, a MAC derived from it, a default route via the gateway on eth0, and the
// published ports. Attaching again returns the same endpoint and repairs what is missing (after a crash).
// Errors: unknown network errdefs.ErrNotFound; --ip outside the range errdefs.ErrInvalidArgument; --ip
// or a host port held by another container errdefs.ErrConflict.
func (d *Driver) Attach(ctx context.Context, req AttachRequest) (Endpoint, error) {
	if req.Container == "" || req.Netns == "" {
		return Endpoint{}, errorf(errdefs.ErrInvalidArgument, "attach to network %q: container ID and namespace path are required", req.Network)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.st.Networks[req.Network]
	if !ok {
		return Endpoint{}, errorf(errdefs.ErrNotFound, "network %q not found; create it with `ovctl network create %s` or pick one from `ovctl network ls`", req.Network, req.Network)
	}
	if n.Internal && len(req.Ports) > 0 {
		return Endpoint{}, errorf(errdefs.ErrInvalidArgument, "network %q is internal: it cannot publish ports (-p); use another network", n.Name)
	}
	if err := d.k.checkNetns(req.Netns); err != nil {
		return Endpoint{}, errorf(errdefs.ErrNotFound, "container %s: network namespace %s: %v", req.Container, req.Netns, err)
	}
	key := endpointKey(n.Name, req.Container)
	if err := d.checkPorts(key, req.Ports); err != nil {
		return Endpoint{}, err
	}
	old := d.st.Endpoints[key]
	want := req.IP
	if old != nil && !want.IsValid() {
		want = old.IP()
	}
	r, err := ipam.ParseRange(n.Subnet.String(), n.Gateway.String(), prefixString(n.IPRange))
	if err != nil {
		return Endpoint{}, fmt.Errorf("network %q: %w", n.Name, err)
	}
	ip, err := d.ipam.Allocate(n.Name, r, req.Container, want)
	if err != nil {
		return Endpoint{}, fmt.Errorf("container %s: %w", req.Container, err)
	}
	e := &Endpoint{Network: n.Name, Container: req.Container, Netns: req.Netns,
		HostIf: vethName(n.ID, req.Container), Address: netip.PrefixFrom(ip, n.Subnet.Bits()),
		Gateway: n.Gateway, MAC: macFor(ip), Ports: slices.Clone(req.Ports)}
	if old != nil && old.Netns == req.Netns {
		e.IfName = old.IfName
	} else if e.IfName, err = d.nextIfName(req.Netns, req.Container); err != nil {
		d.releaseNew(old, n.Name, req.Container)
		return Endpoint{}, err
	}
	e.DefaultRoute = e.IfName == "eth0"
	d.st.Endpoints[key] = e
	err = d.st.save(d.statePath)
	if err == nil {
		err = d.k.ensureBridge(n.Bridge, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()), n.MTU)
	}
	if err == nil {
		err = d.k.ensureVeth(e, n.Bridge, n.MTU)
	}
	if err != nil {
		if old == nil {
			delete(d.st.Endpoints, key)
			_ = d.k.deleteVeth(e.HostIf)
			_ = d.ipam.Release(n.Name, req.Container)
		} else {
			d.st.Endpoints[key] = old
		}
		_ = d.st.save(d.statePath)
		return Endpoint{}, fmt.Errorf("container %s: attach to network %q: %w", req.Container, n.Name, err)
	}
	if err := d.syncChangedRules(); err != nil {
		return Endpoint{}, fmt.Errorf("container %s: network %q: iptables: %w", req.Container, n.Name, err)
	}
	d.log.Info("endpoint attached", "network", n.Name, "container", req.Container, "ip", ip.String(), "if", e.IfName)
	c := *e
	c.Ports = slices.Clone(e.Ports)
	return c, nil
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
	names, err := d.k.linkNames(netns)
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
		if err := d.k.deleteVeth(hostIf); err != nil {
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
			if err := d.k.flushConntrack(e.IP()); err != nil {
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

// syncRules makes the iptables chains hold exactly the rules of the current state: it reads every
// chain and the jumps and repairs whatever differs (with the real client: one iptables-save per table,
// and one atomic iptables-restore per table that needs edits).
func (d *Driver) syncRules() error {
	rs := rulesFor(d.sortedNetworks(), d.sortedEndpoints(), d.cfg.IsolateFrom)
	d.applied = ""
	if err := rs.apply(d.ipt); err != nil {
		return err
	}
	d.applied = rs.String()
	return nil
}

// syncChangedRules is syncRules for Attach and Detach: when the rules of the current state are those
// syncRules last wrote (a container without published ports changes no rule), it runs no iptables at
// all. What another program changed in ov's chains meanwhile is repaired by the next change of the
// rules or the next full sync (Reconcile, a network created or deleted).
func (d *Driver) syncChangedRules() error {
	if d.applied != "" && rulesFor(d.sortedNetworks(), d.sortedEndpoints(), d.cfg.IsolateFrom).String() == d.applied {
		return nil
	}
	return d.syncRules()
}

// Reconcile converges the host to the state: the default network exists, every bridge exists with its
// address, every endpoint whose namespace still exists has its veth, addresses held by no endpoint are
// released, and the iptables chains hold exactly the rules of the state. Call it at start-up (after a
// crash it repairs what was half done) and whenever you like; running it twice changes nothing.
func (d *Driver) Reconcile(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg.DefaultBridge != "" {
		if _, ok := d.st.Networks[DefaultNetwork]; !ok {
			n, err := d.newNetwork(CreateRequest{Name: DefaultNetwork, Driver: api.DriverBridge, Subnet: d.cfg.DefaultSubnet}, newID(), d.cfg.DefaultBridge)
			if err != nil {
				return fmt.Errorf("default network: %w", err)
			}
			if err := d.addNetwork(n); err != nil {
				return err
			}
			d.log.Info("default network created", "bridge", n.Bridge, "subnet", n.Subnet.String())
		}
	}
	var errs []error
	// Bridges of networks that are gone (a crash between forgetting a network and deleting its bridge)
	// would keep their routes and block their subnets.
	known := map[string]bool{}
	for _, n := range d.st.Networks {
		known[n.Bridge] = true
	}
	brs, err := d.k.bridges()
	errs = append(errs, err)
	for _, b := range brs {
		if isUserBridge(b) && !known[b] {
			d.log.Info("deleting the bridge of a network that no longer exists", "bridge", b)
			errs = append(errs, d.k.deleteBridge(b))
		}
	}
	for _, n := range d.sortedNetworks() {
		if err := d.k.ensureBridge(n.Bridge, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()), n.MTU); err != nil {
			errs = append(errs, fmt.Errorf("network %q: bridge %s: %w", n.Name, n.Bridge, err))
		}
		held := map[string]bool{}
		for _, e := range d.st.Endpoints {
			if e.Network == n.Name {
				held[e.Container] = true
			}
		}
		for owner := range d.ipam.Owners(n.Name) {
			if !held[owner] {
				d.log.Info("releasing address held by no endpoint", "network", n.Name, "owner", owner)
				errs = append(errs, d.ipam.Release(n.Name, owner))
			}
		}
	}
	for _, e := range d.sortedEndpoints() {
		n := d.st.Networks[e.Network]
		if n == nil || d.k.checkNetns(e.Netns) != nil {
			continue // the agent decides about endpoints whose container is gone (Detach)
		}
		if err := d.k.ensureVeth(e, n.Bridge, n.MTU); err != nil {
			errs = append(errs, fmt.Errorf("container %s: network %q: %w", e.Container, e.Network, err))
		}
	}
	if err := d.syncRules(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Teardown removes every kernel object the driver made (veths, bridges, namespaces under NetnsDir, its
// iptables chains and jumps) but keeps the state, so a later Reconcile rebuilds them. For uninstalling
// and tests.
func (d *Driver) Teardown(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, e := range d.sortedEndpoints() {
		errs = append(errs, d.k.deleteVeth(e.HostIf))
	}
	if ents, err := os.ReadDir(d.cfg.NetnsDir); err == nil {
		for _, ent := range ents {
			errs = append(errs, d.k.deleteNetns(filepath.Join(d.cfg.NetnsDir, ent.Name())))
		}
	}
	for _, n := range d.sortedNetworks() {
		errs = append(errs, d.k.deleteBridge(n.Bridge))
	}
	errs = append(errs, removeAll(d.ipt))
	return errors.Join(errs...)
}
