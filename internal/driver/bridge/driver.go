package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/ipam"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
)

// Driver manages the local networks of one host. Its methods are safe for concurrent use; they are
// serialised by one mutex (each takes milliseconds).
type Driver struct {
	cfg       Config
	log       *slog.Logger
	ipt       iptables.Client
	ipam      Allocator
	nl        netlink.Namespaces
	h         netlink.Handle // in the calling process's network namespace (the host's)
	sysctl    func(name, value string) error
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
	d := &Driver{cfg: cfg, log: cfg.Log, ipt: cfg.IPTables, ipam: cfg.IPAM, nl: cfg.Netlink, sysctl: cfg.Sysctl,
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
	if d.nl == nil {
		d.nl = netlink.System{}
	}
	if d.sysctl == nil {
		d.sysctl = writeSysctl
	}
	if d.h, err = d.nl.Handle(""); err != nil {
		return nil, fmt.Errorf("network: open netlink: %w", err)
	}
	if d.st, err = loadState(d.statePath); err != nil {
		return nil, err
	}
	return d, nil
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
	brs, err := d.bridges()
	errs = append(errs, err)
	for _, b := range brs {
		if isUserBridge(b) && !known[b] {
			d.log.Info("deleting the bridge of a network that no longer exists", "bridge", b)
			errs = append(errs, d.deleteBridge(b))
		}
	}
	for _, n := range d.sortedNetworks() {
		if err := d.ensureBridge(n.Bridge, netip.PrefixFrom(n.Gateway, n.Subnet.Bits()), n.MTU); err != nil {
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
		if n == nil || d.checkNetns(e.Netns) != nil {
			continue // the agent decides about endpoints whose container is gone (Detach)
		}
		if err := d.ensureVeth(e, n.Bridge, n.MTU); err != nil {
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
		errs = append(errs, d.deleteVeth(e.HostIf))
	}
	if ents, err := os.ReadDir(d.cfg.NetnsDir); err == nil {
		for _, ent := range ents {
			errs = append(errs, d.nl.Remove(filepath.Join(d.cfg.NetnsDir, ent.Name())))
		}
	}
	for _, n := range d.sortedNetworks() {
		errs = append(errs, d.deleteBridge(n.Bridge))
	}
	errs = append(errs, removeAll(d.ipt))
	return errors.Join(errs...)
}

var (
	_ driver.NetworkDriver = (*Driver)(nil)
	_ driver.NetnsManager  = (*Driver)(nil)
)
