package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ipam"
)

// Cluster is what apply needs from the controller; *client.Client satisfies it. Every write is checked
// by the controller: CreateNetwork fails with errdefs.ErrAlreadyExists when the name is taken and with
// errdefs.ErrConflict when the subnet or VNI clashes; UpdateNetwork compares Revision and fails with
// errdefs.ErrConflict when the network changed since it was read; DeleteNetwork without force fails
// with errdefs.ErrConflict while endpoints use the network. RegisterHost updates a registered host's
// address and labels (apply never registers a new host: that is its agent's job).
type Cluster interface {
	ListNetworks(ctx context.Context) ([]api.Network, error)
	CreateNetwork(ctx context.Context, n api.Network) (api.Network, error)
	UpdateNetwork(ctx context.Context, n api.Network) (api.Network, error)
	DeleteNetwork(ctx context.Context, name string, force bool) error
	ListHosts(ctx context.Context) ([]api.Host, error)
	RegisterHost(ctx context.Context, h api.Host) (api.Host, error)
}

// State is the part of the cluster a file describes, as read from the controller.
type State struct {
	Networks []api.Network
	Hosts    []api.Host
}

// Current reads the cluster's networks and hosts.
func Current(ctx context.Context, c Cluster) (State, error) {
	nets, err := c.ListNetworks(ctx)
	if err != nil {
		return State{}, fmt.Errorf("list the cluster's networks: %w", err)
	}
	hosts, err := c.ListHosts(ctx)
	if err != nil {
		return State{}, fmt.Errorf("list the cluster's hosts: %w", err)
	}
	return State{Networks: nets, Hosts: hosts}, nil
}

// Options changes what a plan may do.
type Options struct {
	// Prune deletes the networks labelled ov.apply/managed=true that the file does not name.
	Prune bool
	// DryRun makes Run print the plan and change nothing.
	DryRun bool
	// JSON makes Run write one JSON object (Report) instead of plan lines.
	JSON bool
}

// Report is what Run writes with Options.JSON: the plan and whether it was applied.
type Report struct {
	File    string   `json:"file"`
	Changes []Change `json:"changes"`
	DryRun  bool     `json:"dryRun"`
	// Applied is true when changes were made, all of them; false when there was nothing to do, with
	// DryRun, and when a change failed (Run then also returns the error).
	Applied bool `json:"applied"`
}

// Op is what a Change does; its value is the character that starts the change's line.
type Op byte

const (
	OpCreate Op = '+'
	OpUpdate Op = '~'
	OpDelete Op = '-'
	OpKeep   Op = '=' // nothing to do
	OpNote   Op = '!' // nothing to do, but worth knowing (a network kept despite not being in the file)
)

// Change is one line of a plan. Network or Host holds the object to send: for an update, the current
// object (with its Revision, for compare-and-swap) with the new labels and internal flag.
type Change struct {
	Op      Op          `json:"op"`
	Kind    string      `json:"kind"` // "network" or "host"
	Name    string      `json:"name"`
	Detail  string      `json:"detail"` // what follows the name on the change's line
	Network api.Network `json:"-"`
	Host    api.Host    `json:"-"`
}

var opNames = map[Op]string{OpCreate: "create", OpUpdate: "update", OpDelete: "delete", OpKeep: "unchanged", OpNote: "note"}

// MarshalText names the op in JSON output: create, update, delete, unchanged or note.
func (o Op) MarshalText() ([]byte, error) { return []byte(opNames[o]), nil }

// UnmarshalText reads a name written by MarshalText.
func (o *Op) UnmarshalText(b []byte) error {
	for op, name := range opNames {
		if name == string(b) {
			*o = op
			return nil
		}
	}
	return fmt.Errorf("unknown plan op %q: %w", b, errdefs.ErrInvalidArgument)
}

// String renders the change as one line, e.g. "+ network front (overlay 10.20.0.0/24)".
func (c Change) String() string {
	sep := " "
	if c.Op == OpUpdate {
		sep = ": "
	}
	return fmt.Sprintf("%c %s %s%s%s", rune(c.Op), c.Kind, c.Name, sep, c.Detail)
}

// Plan is the ordered list of changes that makes the cluster match a file. Changes run in order:
// host labels first, then deletions (which free subnets and VNIs), then network updates in file
// order, then creations: first those that name both subnet and VNI, then those that name one, then
// those that leave both to the controller, each group in file order.
type Plan struct {
	File    string
	Changes []Change
}

// Count returns how many changes have op.
func (p *Plan) Count(op Op) int {
	n := 0
	for _, c := range p.Changes {
		if c.Op == op {
			n++
		}
	}
	return n
}

// Empty reports whether applying the plan would change nothing.
func (p *Plan) Empty() bool {
	return p.Count(OpCreate)+p.Count(OpUpdate)+p.Count(OpDelete) == 0
}

// String renders every change on its own line, then a summary line.
func (p *Plan) String() string {
	var b strings.Builder
	for _, c := range p.Changes {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	if p.Empty() {
		fmt.Fprintf(&b, "No changes: the cluster already matches %s.\n", p.File)
	} else {
		fmt.Fprintf(&b, "Plan: %d to create, %d to change, %d to delete, %d unchanged.\n",
			p.Count(OpCreate), p.Count(OpUpdate), p.Count(OpDelete), p.Count(OpKeep))
	}
	return b.String()
}

// NewPlan compares the file with the cluster's current state and returns the changes that make the
// cluster match the file. A file that clashes with the cluster (a change to a field that cannot change
// in place, a subnet or VNI taken by a network the file does not name, a host address taken) gives a
// *FileError of class errdefs.ErrConflict listing every clash with its line, and no plan.
func NewPlan(f *File, cur State, opts Options) (*Plan, error) {
	pl := &planner{problems: problems{file: f.Name}, f: f, cur: cur, opts: opts, plan: &Plan{File: f.Name}}
	pl.hosts()
	pl.networks()
	if err := pl.err(errdefs.ErrConflict); err != nil {
		return nil, err
	}
	return pl.plan, nil
}

type planner struct {
	problems
	f      *File
	cur    State
	byName map[string]api.Network // cur.Networks by name
	opts   Options
	plan   *Plan
}

func (pl *planner) change(c Change) { pl.plan.Changes = append(pl.plan.Changes, c) }

func (pl *planner) hosts() {
	byName := map[string]api.Host{}
	byAddr := map[string]api.Host{}
	for _, h := range pl.cur.Hosts {
		byName[h.Name] = h
		byAddr[h.Address] = h
	}
	for i := range pl.f.Hosts {
		fh := &pl.f.Hosts[i]
		if other, ok := byAddr[fh.Address]; ok && other.Name != fh.Name {
			pl.add(fh.line("address"), "host %q: address %s is already registered by host %q; each host needs its own underlay address", fh.Name, fh.Address, other.Name)
			continue
		}
		cur, ok := byName[fh.Name]
		if !ok {
			// Registering a host creates its own credential, which only its agent can hold: a host
			// registered by apply would lock its agent out. The agent registers itself when it joins.
			pl.change(Change{Op: OpNote, Kind: "host", Name: fh.Name, Detail: "not registered yet (" + join(fh.Address, labelText(fh.Labels)) + "): its agent registers it when it joins; apply again then to set its labels"})
			continue
		}
		if cur.Address != fh.Address {
			pl.add(fh.line("address"), "host %q is registered with address %s but the file says %s; an agent registers its own address, so correct the file", fh.Name, cur.Address, fh.Address)
			continue
		}
		// Host labels are merged: the file sets the labels it names and leaves the others, which the
		// host's agent may own.
		want := maps.Clone(cur.Labels)
		if want == nil {
			want = map[string]string{}
		}
		maps.Copy(want, fh.Labels)
		if d := labelDiff(cur.Labels, want); d != "" {
			h := cur
			h.Labels = want
			pl.change(Change{Op: OpUpdate, Kind: "host", Name: fh.Name, Detail: "labels " + d, Host: h})
			continue
		}
		pl.change(Change{Op: OpKeep, Kind: "host", Name: fh.Name, Detail: "unchanged"})
	}
}

func (pl *planner) networks() {
	named := map[string]bool{}
	for _, n := range pl.f.Networks {
		named[n.Name] = true
	}
	pl.byName = map[string]api.Network{}
	for _, n := range pl.cur.Networks {
		pl.byName[n.Name] = n
	}

	// Networks the file does not name: pruned when managed and asked to, kept otherwise. Those kept
	// still hold their subnets and VNIs.
	var kept []api.Network
	for _, n := range sortedByName(pl.cur.Networks) {
		if named[n.Name] {
			continue
		}
		switch {
		case managed(n) && pl.opts.Prune:
			pl.change(Change{Op: OpDelete, Kind: "network", Name: n.Name, Detail: "(" + networkText(n) + ")", Network: n})
			continue
		case managed(n):
			pl.change(Change{Op: OpNote, Kind: "network", Name: n.Name, Detail: "kept: created by apply but no longer in the file; apply with --prune to delete it"})
		case pl.opts.Prune:
			pl.change(Change{Op: OpNote, Kind: "network", Name: n.Name, Detail: "kept: not created by apply (no label " + ManagedLabel + "=true), so --prune leaves it"})
		}
		kept = append(kept, n)
	}

	// Creations that leave the subnet or VNI to the controller come after those that name theirs, so
	// that the controller's pick cannot take a subnet or VNI that a later network of the file names.
	var creates [3][]Change
	for i := range pl.f.Networks {
		fn := &pl.f.Networks[i]
		want := fn.Network
		want.Labels = withManaged(fn.Labels)
		c, exists := pl.byName[fn.Name]
		if exists {
			pl.update(fn, c, want)
			continue
		}
		if !pl.free(fn, kept) {
			continue
		}
		picks := 0
		if fn.Subnet == "" {
			picks++
		}
		if fn.VNI == 0 {
			picks++
		}
		creates[picks] = append(creates[picks], Change{Op: OpCreate, Kind: "network", Name: fn.Name, Detail: "(" + networkText(want) + ")", Network: want})
	}
	for _, group := range creates {
		pl.plan.Changes = append(pl.plan.Changes, group...)
	}
}

// free reports whether the subnet and VNI the file asks for a new network are not held by a network
// the file does not name (the networks that the file names are checked against each other by Parse, and
// against their current values by update).
func (pl *planner) free(fn *Network, kept []api.Network) bool {
	ok := true
	hint := func(o api.Network) string {
		if managed(o) {
			return fmt.Sprintf("remove %q first (ovctl network rm %s), or apply with --prune to delete it", o.Name, o.Name)
		}
		return fmt.Sprintf("remove %q first (ovctl network rm %s); it was not created by apply, so --prune leaves it", o.Name, o.Name)
	}
	if s, err := netip.ParsePrefix(fn.Subnet); err == nil {
		for _, o := range kept {
			if op, err := netip.ParsePrefix(o.Subnet); err == nil && ipam.Overlaps(op, s) {
				pl.add(fn.line("subnet"), "network %q: subnet %s overlaps the existing network %q (%s), which the file does not name; choose another subnet, or %s", fn.Name, s, o.Name, op, hint(o))
				ok = false
			}
		}
	}
	if fn.VNI != 0 {
		for _, o := range kept {
			if o.VNI == fn.VNI {
				pl.add(fn.line("vni"), "network %q: VNI %d is the VNI of the existing network %q, which the file does not name; choose another vni, or %s", fn.Name, fn.VNI, o.Name, hint(o))
				ok = false
			}
		}
	}
	// A network of the file that exists and whose subnet or VNI the file leaves out keeps its current
	// one (networks that name theirs were checked against each other by Parse).
	s, serr := netip.ParsePrefix(fn.Subnet)
	for _, o := range pl.f.Networks {
		c, exists := pl.byName[o.Name]
		if !exists || o.Name == fn.Name {
			continue
		}
		if cs, err := netip.ParsePrefix(c.Subnet); serr == nil && err == nil && o.Subnet == "" && ipam.Overlaps(cs, s) {
			pl.add(fn.line("subnet"), "network %q: subnet %s overlaps network %q, which has %s in the cluster; choose another subnet", fn.Name, s, o.Name, cs)
			ok = false
		}
		if fn.VNI != 0 && o.VNI == 0 && c.VNI == fn.VNI {
			pl.add(fn.line("vni"), "network %q: VNI %d is the VNI network %q has in the cluster; choose another vni", fn.Name, fn.VNI, o.Name)
			ok = false
		}
	}
	return ok
}

// update plans the change of an existing network c to what the file says.
func (pl *planner) update(fn *Network, c, want api.Network) {
	fixed := []struct {
		field      string
		file, have string
		same       bool
	}{
		{"driver", fn.Driver, c.Driver, fn.Driver == c.Driver},
		{"subnet", fn.Subnet, c.Subnet, fn.Subnet == "" || samePrefix(fn.Subnet, c.Subnet)},
		{"gateway", fn.Gateway, c.Gateway, fn.Gateway == "" || sameAddr(fn.Gateway, c.Gateway)},
		{"ipRange", fn.IPRange, c.IPRange, fn.IPRange == "" || samePrefix(fn.IPRange, c.IPRange)},
		{"vni", fmt.Sprint(fn.VNI), fmt.Sprint(c.VNI), fn.VNI == 0 || fn.VNI == c.VNI},
		{"mtu", fmt.Sprint(fn.MTU), mtuText(c.MTU), fn.MTU == 0 || fn.MTU == c.MTU},
		{"encrypted", fmt.Sprint(fn.Encrypted), fmt.Sprint(c.Encrypted), fn.Encrypted == c.Encrypted},
	}
	bad := false
	for _, x := range fixed {
		if x.same {
			continue
		}
		have := x.have
		if have == "" {
			have = "none"
		}
		pl.add(fn.line(x.field), "network %q: %s cannot change in place (the cluster has %s, the file says %s); delete and re-create it (ovctl network rm %s, then apply), or remove it from the file and apply with --prune first", fn.Name, x.field, have, x.file, fn.Name)
		bad = true
	}
	if bad {
		return
	}
	var diffs []string
	if c.Internal != fn.Internal {
		diffs = append(diffs, fmt.Sprintf("internal %t -> %t", c.Internal, fn.Internal))
	}
	if d := labelDiff(withoutReserved(c.Labels), withoutReserved(want.Labels)); d != "" {
		diffs = append(diffs, "labels "+d)
	}
	if !managed(c) {
		diffs = append(diffs, "adopted by apply (label "+ManagedLabel+"=true)")
	}
	if len(diffs) == 0 {
		pl.change(Change{Op: OpKeep, Kind: "network", Name: fn.Name, Detail: "unchanged"})
		return
	}
	n := c
	n.Internal = fn.Internal
	n.Labels = want.Labels
	pl.change(Change{Op: OpUpdate, Kind: "network", Name: fn.Name, Detail: strings.Join(diffs, "; "), Network: n})
}

// Apply makes the changes of the plan in order and stops at the first that fails. The error says which
// change failed and how many were made before it; a change that lost a race with another writer wraps
// errdefs.ErrConflict or errdefs.ErrAlreadyExists.
func (p *Plan) Apply(ctx context.Context, c Cluster) error {
	total := p.Count(OpCreate) + p.Count(OpUpdate) + p.Count(OpDelete)
	done := 0
	for _, ch := range p.Changes {
		var err error
		switch {
		case ch.Op == OpCreate && ch.Kind == "network":
			_, err = c.CreateNetwork(ctx, ch.Network)
		case ch.Op == OpUpdate && ch.Kind == "network":
			_, err = c.UpdateNetwork(ctx, ch.Network)
		case ch.Op == OpDelete && ch.Kind == "network":
			err = c.DeleteNetwork(ctx, ch.Name, false)
		case ch.Op == OpUpdate && ch.Kind == "host":
			_, err = c.RegisterHost(ctx, ch.Host)
		default:
			continue
		}
		if err != nil {
			hint := "fix the cause and apply again"
			if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrAlreadyExists) || errors.Is(err, errdefs.ErrNotFound) {
				hint = "the cluster changed since the plan was made, or the change clashes with it; run ovctl apply again to see the new plan"
			}
			return fmt.Errorf("apply %s: change %d of %d failed (%d made before it; %s): %w", p.File, done+1, total, done, hint, fmt.Errorf("%s: %w", ch, err))
		}
		done++
	}
	return nil
}

func managed(n api.Network) bool { return n.Labels[ManagedLabel] == "true" }

func withManaged(l map[string]string) map[string]string {
	out := maps.Clone(l)
	if out == nil {
		out = map[string]string{}
	}
	out[ManagedLabel] = "true"
	return out
}

func withoutReserved(l map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range l {
		if !strings.HasPrefix(k, ReservedLabelPrefix) {
			out[k] = v
		}
	}
	return out
}

// labelDiff renders the change from labels a to b as "+k=v -k k=old->new", or "" when equal.
func labelDiff(a, b map[string]string) string {
	var out []string
	for _, k := range sortedKeys(a, b) {
		av, inA := a[k]
		bv, inB := b[k]
		switch {
		case !inA:
			out = append(out, "+"+k+"="+bv)
		case !inB:
			out = append(out, "-"+k)
		case av != bv:
			out = append(out, k+"="+av+"->"+bv)
		}
	}
	return strings.Join(out, " ")
}

func sortedKeys(ms ...map[string]string) []string {
	set := map[string]bool{}
	for _, m := range ms {
		for k := range m {
			set[k] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// labelText renders labels as "labels a=1,b=2" (without apply's own), or "".
func labelText(l map[string]string) string {
	l = withoutReserved(l)
	if len(l) == 0 {
		return ""
	}
	var kv []string
	for _, k := range sortedKeys(l) {
		kv = append(kv, k+"="+l[k])
	}
	return "labels " + strings.Join(kv, ",")
}

// networkText renders what a network is made of, e.g. "overlay 10.20.0.0/24, gateway 10.20.0.1, internal".
func networkText(n api.Network) string {
	head := n.Driver
	if n.Subnet != "" {
		head += " " + n.Subnet
	} else {
		head += ", subnet chosen by the controller"
	}
	parts := []string{head}
	if n.Gateway != "" {
		parts = append(parts, "gateway "+n.Gateway)
	}
	if n.IPRange != "" {
		parts = append(parts, "ipRange "+n.IPRange)
	}
	if n.VNI != 0 {
		parts = append(parts, fmt.Sprintf("vni %d", n.VNI))
	}
	if n.MTU != 0 {
		parts = append(parts, fmt.Sprintf("mtu %d", n.MTU))
	}
	if n.Internal {
		parts = append(parts, "internal")
	}
	if n.Encrypted {
		parts = append(parts, "encrypted")
	}
	return join(append(parts, labelText(n.Labels))...)
}

// join joins the non-empty parts with ", ".
func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

func mtuText(m int) string {
	if m == 0 {
		return "derived"
	}
	return fmt.Sprint(m)
}

func samePrefix(a, b string) bool {
	pa, err1 := netip.ParsePrefix(a)
	pb, err2 := netip.ParsePrefix(b)
	return err1 == nil && err2 == nil && pa == pb
}

func sameAddr(a, b string) bool {
	aa, err1 := netip.ParseAddr(a)
	ab, err2 := netip.ParseAddr(b)
	return err1 == nil && err2 == nil && aa == ab
}

func sortedByName(nets []api.Network) []api.Network {
	out := slices.Clone(nets)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Run reads the cluster's state, plans the changes that make it match f, writes the plan to out and,
// unless opts.DryRun, applies it and writes a summary. A file that clashes with the cluster changes
// nothing.
func Run(ctx context.Context, c Cluster, f *File, opts Options, out io.Writer) error {
	cur, err := Current(ctx, c)
	if err != nil {
		return err
	}
	p, err := NewPlan(f, cur, opts)
	if err != nil {
		return err
	}
	if opts.JSON {
		r := Report{File: p.File, Changes: p.Changes, DryRun: opts.DryRun}
		if !p.Empty() && !opts.DryRun {
			err = p.Apply(ctx, c)
			r.Applied = err == nil
		}
		if r.Changes == nil {
			r.Changes = []Change{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(r); jerr != nil && err == nil {
			err = jerr
		}
		return err
	}
	fmt.Fprint(out, p)
	switch {
	case p.Empty():
		return nil
	case opts.DryRun:
		fmt.Fprintln(out, "Dry run: nothing was changed.")
		return nil
	}
	if err := p.Apply(ctx, c); err != nil {
		return err
	}
	fmt.Fprintf(out, "Applied: %d created, %d changed, %d deleted.\n", p.Count(OpCreate), p.Count(OpUpdate), p.Count(OpDelete))
	return nil
}
