package bridge

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ipam"
	"github.com/ovnet/ov/internal/netlink"
)

// CreateRequest asks for a bridge network. Empty Subnet picks one from the address pools; empty
// Gateway is the first address of the subnet; empty IPRange is the whole subnet; MTU 0 is Config.MTU.
type CreateRequest = api.Network

// CreateNetwork creates a bridge network: its bridge, its address range and its iptables rules.
// A name in use is errdefs.ErrAlreadyExists; a subnet that overlaps another network or a host route is
// errdefs.ErrConflict naming both.
func (d *Driver) CreateNetwork(ctx context.Context, req CreateRequest) (api.Network, error) {
	if req.Driver == "" {
		req.Driver = api.DriverBridge
	}
	if req.Driver != api.DriverBridge {
		return api.Network{}, errorf(errdefs.ErrInvalidArgument, "network %q: the local driver makes bridge networks, not %q", req.Name, req.Driver)
	}
	if err := req.Validate(); err != nil {
		return api.Network{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.st.Networks[req.Name]; ok {
		return api.Network{}, errorf(errdefs.ErrAlreadyExists, "network %q already exists; choose another name or remove it first", req.Name)
	}
	id := newID()
	n, err := d.newNetwork(req, id, "ov-"+id[:12])
	if err != nil {
		return api.Network{}, err
	}
	if err := d.addNetwork(n); err != nil {
		return api.Network{}, err
	}
	d.log.Info("network created", "network", n.Name, "bridge", n.Bridge, "subnet", n.Subnet.String())
	return n.toAPI(), nil
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
		mtu, err := d.uplinkMTU()
		if err != nil {
			return nil, fmt.Errorf("network %q: derive the MTU from the host's default route: %w (configure the MTU of bridge networks)", req.Name, err)
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
		err = d.ensureBridge(n)
	}
	if err == nil {
		err = d.syncRules()
	}
	if err != nil {
		delete(d.st.Networks, n.Name)
		_ = d.deleteBridge(n.Bridge)
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

// foreignRoutes returns the host's routes that are not on one of the driver's bridges.
func (d *Driver) foreignRoutes() ([]netlink.Route, error) {
	rs, err := netlink.Routes(d.h)
	if err != nil {
		return nil, fmt.Errorf("list the host's routes: %w", err)
	}
	ours := map[string]bool{}
	for _, n := range d.st.Networks {
		ours[n.Bridge] = true
	}
	var out []netlink.Route
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
	if err := d.deleteBridge(n.Bridge); err != nil {
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
func (d *Driver) Networks(ctx context.Context) ([]api.Network, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []api.Network
	for _, n := range d.sortedNetworks() {
		out = append(out, n.toAPI())
	}
	return out, nil
}

// toAPI is the network as the agent's API shows it.
func (n *Network) toAPI() api.Network {
	out := api.Network{Name: n.Name, Driver: api.DriverBridge, Subnet: n.Subnet.String(), Gateway: n.Gateway.String(),
		MTU: n.MTU, Internal: n.Internal, Labels: n.Labels, ID: n.ID, Created: n.Created}
	if n.IPRange.IsValid() {
		out.IPRange = n.IPRange.String()
	}
	return out
}

// DefaultNetwork is the name of the default bridge network (like Docker's "bridge").
const DefaultNetwork = driver.DefaultNetwork
