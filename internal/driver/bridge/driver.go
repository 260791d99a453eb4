package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	// guarded is true once the loopback guard (ChainLoopback and its jump) was written, and until a
	// write of it fails or Teardown removes it.
	guarded bool
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
	rs := d.rules()
	d.applied, d.guarded = "", false
	if err := rs.apply(d.ipt); err != nil {
		return err
	}
	d.applied, d.guarded = rs.String(), true
	return nil
}

// rules is the rule set of the current state.
func (d *Driver) rules() ruleSet {
	rs := rulesFor(d.sortedNetworks(), d.sortedEndpoints(), d.cfg.IsolateFrom)
	if d.cfg.unguarded {
		rs[chainRef{"raw", ChainLoopback}] = nil
	}
	return rs
}

// ensureGuard puts the loopback guard in place (the raw table's ChainLoopback and its jump from
// PREROUTING) unless it is known to be there. Every path that gives a container a network namespace
// or an interface calls it first, so no container, on a bridge or an overlay network, can send a
// packet while the host lacks the guard: when it cannot be written, the container gets no network
// and the error says why.
func (d *Driver) ensureGuard() error {
	if d.guarded {
		return nil
	}
	raw := d.rules().tables(false)[0]
	if _, err := iptables.Sync(d.ipt, raw); err != nil {
		return fmt.Errorf("cannot put in place the rules that keep containers away from the host's 127.0.0.1 (iptables raw table, chain %s): %w; no container gets a network until they are (check that the iptables binary works: iptables -t raw -S)", ChainLoopback, err)
	}
	d.guarded = true
	return nil
}

// syncChangedRules is syncRules for Attach and Detach: when the rules of the current state are those
// syncRules last wrote (a container without published ports changes no rule), it runs no iptables at
// all. What another program changed in ov's chains meanwhile is repaired by the next change of the
// rules or the next full sync (Reconcile, a network created or deleted).
func (d *Driver) syncChangedRules() error {
	if d.applied != "" && d.rules().String() == d.applied {
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
	// The loopback guard first: containers that survived a restart may already be sending.
	if err := d.ensureGuard(); err != nil {
		return err
	}
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
		if err := d.ensureBridge(n); err != nil {
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
	d.applied, d.guarded = "", false
	return errors.Join(errs...)
}

var (
	_ driver.NetworkDriver = (*Driver)(nil)
	_ driver.NetnsManager  = (*Driver)(nil)
)
