package iptables

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// builtin lists the built-in chains of each table, in the order iptables-save prints them.
var builtin = map[string][]string{
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"raw":    {"PREROUTING", "OUTPUT"},
}

// Fake is an in-memory Client for unit tests. It enforces what the kernel enforces (a chain must exist
// before it gets rules, a chain that is jumped to cannot be deleted) and renders its state with String.
type Fake struct {
	mu     sync.Mutex
	tables map[string]*fakeTable
	// Calls counts the mutating calls (NewChain, Insert, Delete, DeleteById, ClearAndDeleteChain).
	Calls int
	// Reads counts the calls that only look (ChainExists, List, Exists): with the real client each
	// is a run of the iptables binary too.
	Reads int
}

type fakeTable struct {
	policy map[string]string // built-in chain -> policy
	chains map[string][]Rule
}

var (
	_ Client   = (*Fake)(nil)
	_ Restorer = (*Fake)(nil)
)

// NewFake returns an empty Fake: every table with its built-in chains, policy ACCEPT, no rules.
func NewFake() *Fake {
	f := &Fake{tables: map[string]*fakeTable{}}
	for t, chains := range builtin {
		ft := &fakeTable{policy: map[string]string{}, chains: map[string][]Rule{}}
		for _, c := range chains {
			ft.policy[c] = "ACCEPT"
			ft.chains[c] = nil
		}
		f.tables[t] = ft
	}
	return f
}

func (f *Fake) table(t string) (*fakeTable, error) {
	ft, ok := f.tables[t]
	if !ok {
		return nil, fmt.Errorf("fake iptables: table %q does not exist", t)
	}
	return ft, nil
}

func (f *Fake) chain(t, c string) (*fakeTable, []Rule, error) {
	ft, err := f.table(t)
	if err != nil {
		return nil, nil, err
	}
	rules, ok := ft.chains[c]
	if !ok {
		return nil, nil, fmt.Errorf("fake iptables: chain %s/%s does not exist", t, c)
	}
	return ft, rules, nil
}

func join(spec []string) Rule { return Rule(strings.Join(spec, " ")) }

// SetPolicy sets the policy of a built-in chain (as another program on the host might).
func (f *Fake) SetPolicy(table, chain, policy string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tables[table].policy[chain] = policy
}

// Append adds a rule at the end of chain (as another program on the host might).
func (f *Fake) Append(table, chain string, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft, rules, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	ft.chains[chain] = append(rules, join(rulespec))
	return nil
}

// ChainExists implements Client.
func (f *Fake) ChainExists(table, chain string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	ft, err := f.table(table)
	if err != nil {
		return false, err
	}
	_, ok := ft.chains[chain]
	return ok, nil
}

// NewChain implements Client.
func (f *Fake) NewChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	ft, err := f.table(table)
	if err != nil {
		return err
	}
	if _, ok := ft.chains[chain]; ok {
		return fmt.Errorf("fake iptables: chain %s/%s already exists", table, chain)
	}
	ft.chains[chain] = nil
	return nil
}

// ClearAndDeleteChain implements Client.
func (f *Fake) ClearAndDeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	ft, err := f.table(table)
	if err != nil {
		return err
	}
	if _, ok := ft.chains[chain]; !ok {
		return nil
	}
	if _, ok := ft.policy[chain]; ok {
		return fmt.Errorf("fake iptables: cannot delete built-in chain %s/%s", table, chain)
	}
	for from, rules := range ft.chains {
		for _, r := range rules {
			if slices.Contains([]string{"-j " + chain, "-g " + chain}, lastTwo(r)) {
				return fmt.Errorf("fake iptables: chain %s/%s is referenced by %s: %q", table, chain, from, r)
			}
		}
	}
	delete(ft.chains, chain)
	return nil
}

func lastTwo(r Rule) string {
	f := r.Spec()
	if len(f) < 2 {
		return ""
	}
	return f[len(f)-2] + " " + f[len(f)-1]
}

// List implements Client.
func (f *Fake) List(table, chain string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	ft, rules, err := f.chain(table, chain)
	if err != nil {
		return nil, err
	}
	var out []string
	if p, ok := ft.policy[chain]; ok {
		out = append(out, "-P "+chain+" "+p)
	} else {
		out = append(out, "-N "+chain)
	}
	for _, r := range rules {
		out = append(out, "-A "+chain+" "+string(r))
	}
	return out, nil
}

// Exists implements Client.
func (f *Fake) Exists(table, chain string, rulespec ...string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	_, rules, err := f.chain(table, chain)
	if err != nil {
		return false, err
	}
	return slices.Contains(rules, join(rulespec)), nil
}

// Insert implements Client.
func (f *Fake) Insert(table, chain string, pos int, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	ft, rules, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if pos < 1 || pos > len(rules)+1 {
		return fmt.Errorf("fake iptables: index %d out of range for %s/%s (%d rules)", pos, table, chain, len(rules))
	}
	if err := f.checkTarget(ft, rulespec); err != nil {
		return err
	}
	ft.chains[chain] = slices.Insert(rules, pos-1, join(rulespec))
	return nil
}

// checkTarget refuses a jump to a chain that does not exist, as iptables does.
func (f *Fake) checkTarget(ft *fakeTable, spec []string) error {
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] == "-j" || spec[i] == "-g" {
			t := spec[i+1]
			if strings.ToUpper(t) == t && strings.HasPrefix(t, "OV") {
				if _, ok := ft.chains[t]; !ok {
					return fmt.Errorf("fake iptables: jump target %s does not exist", t)
				}
			}
		}
	}
	return nil
}

// Delete implements Client.
func (f *Fake) Delete(table, chain string, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	ft, rules, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	i := slices.Index(rules, join(rulespec))
	if i < 0 {
		return fmt.Errorf("fake iptables: rule %q not in %s/%s", join(rulespec), table, chain)
	}
	ft.chains[chain] = slices.Delete(rules, i, i+1)
	return nil
}

// DeleteById implements Client.
func (f *Fake) DeleteById(table, chain string, id int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	ft, rules, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if id < 1 || id > len(rules) {
		return fmt.Errorf("fake iptables: index %d out of range for %s/%s (%d rules)", id, table, chain, len(rules))
	}
	ft.chains[chain] = slices.Delete(rules, id-1, id)
	return nil
}

// String renders every table that has a rule or a custom chain, like iptables-save without counters:
// "*table", one ":CHAIN POLICY" line per chain (built-in first, then custom sorted, "-" as policy),
// the "-A CHAIN rule" lines in the same chain order, and "COMMIT".
func (f *Fake) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, t := range []string{"raw", "mangle", "nat", "filter"} {
		ft := f.tables[t]
		var custom []string
		n := 0
		for c, rules := range ft.chains {
			n += len(rules)
			if _, ok := ft.policy[c]; !ok {
				custom = append(custom, c)
			}
		}
		if n == 0 && len(custom) == 0 {
			continue
		}
		sort.Strings(custom)
		order := append(append([]string{}, builtin[t]...), custom...)
		fmt.Fprintf(&b, "*%s\n", t)
		for _, c := range order {
			p := ft.policy[c]
			if p == "" {
				p = "-"
			}
			fmt.Fprintf(&b, ":%s %s\n", c, p)
		}
		for _, c := range order {
			for _, r := range ft.chains[c] {
				fmt.Fprintf(&b, "-A %s %s\n", c, r)
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// Save implements Restorer.
func (f *Fake) Save(table string) (map[string][]Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	ft, err := f.table(table)
	if err != nil {
		return nil, err
	}
	out := map[string][]Rule{}
	for c, rules := range ft.chains {
		out[c] = slices.Clone(rules)
	}
	return out, nil
}

// Restore implements Restorer: the lines are applied to a copy of the table, which replaces the table
// only when every line succeeded; one mutating call.
func (f *Fake) Restore(table string, lines []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	ft, err := f.table(table)
	if err != nil {
		return err
	}
	tmp := &fakeTable{policy: ft.policy, chains: map[string][]Rule{}}
	for c, rules := range ft.chains {
		tmp.chains[c] = slices.Clone(rules)
	}
	for _, l := range lines {
		if err := f.restoreLine(tmp, l); err != nil {
			return fmt.Errorf("fake iptables: restore %q: %w", l, err)
		}
	}
	ft.chains = tmp.chains
	return nil
}

func (f *Fake) restoreLine(ft *fakeTable, l string) error {
	if name, ok := strings.CutPrefix(l, ":"); ok {
		c := strings.Fields(name)[0]
		if _, builtin := ft.policy[c]; !builtin {
			ft.chains[c] = nil // created, or flushed as iptables-restore --noflush does
		}
		return nil
	}
	fl := strings.Fields(l)
	if len(fl) < 2 {
		return fmt.Errorf("short line")
	}
	rules, ok := ft.chains[fl[1]]
	if !ok {
		return fmt.Errorf("chain %s does not exist", fl[1])
	}
	pos := 0
	spec := fl[2:]
	if fl[0] == "-I" || fl[0] == "-D" {
		if len(fl) < 3 {
			return fmt.Errorf("no position")
		}
		if _, err := fmt.Sscan(fl[2], &pos); err != nil {
			return err
		}
		spec = fl[3:]
	}
	switch fl[0] {
	case "-A":
		pos = len(rules) + 1
		fallthrough
	case "-I":
		if pos < 1 || pos > len(rules)+1 {
			return fmt.Errorf("index %d out of range (%d rules)", pos, len(rules))
		}
		if err := f.checkTarget(ft, spec); err != nil {
			return err
		}
		ft.chains[fl[1]] = slices.Insert(rules, pos-1, join(spec))
	case "-D":
		if pos < 1 || pos > len(rules) {
			return fmt.Errorf("index %d out of range (%d rules)", pos, len(rules))
		}
		ft.chains[fl[1]] = slices.Delete(rules, pos-1, pos)
	default:
		return fmt.Errorf("unknown command %s", fl[0])
	}
	return nil
}
