// Package vxlantest holds test doubles for package vxlan: an in-memory IPTables.
package vxlantest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// IPTables is an in-memory vxlan.IPTables. It keeps the filter and nat tables with their built-in
// chains, rules as `iptables -S` lines, and refuses what iptables refuses (deleting a chain that is
// not empty or still referenced, appending to a missing chain).
type IPTables struct {
	mu     sync.Mutex
	tables map[string]map[string][]string // table -> chain -> "-A CHAIN spec"
	Calls  int                            // number of modifying calls
}

var builtin = map[string][]string{
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"raw":    {"PREROUTING", "OUTPUT"},
}

// NewIPTables returns tables holding only the empty built-in chains.
func NewIPTables() *IPTables {
	t := &IPTables{tables: map[string]map[string][]string{}}
	for table, chains := range builtin {
		t.tables[table] = map[string][]string{}
		for _, c := range chains {
			t.tables[table][c] = nil
		}
	}
	return t
}

func isBuiltin(table, chain string) bool { return slices.Contains(builtin[table], chain) }

func (t *IPTables) chain(table, chain string) ([]string, bool) {
	c, ok := t.tables[table][chain]
	return c, ok
}

func rule(chain string, spec []string) string { return "-A " + chain + " " + strings.Join(spec, " ") }

func (t *IPTables) ChainExists(table, chain string) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tables[table] == nil {
		return false, fmt.Errorf("fake iptables: no table %q", table)
	}
	_, ok := t.chain(table, chain)
	return ok, nil
}

func (t *IPTables) ClearChain(table, chain string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tables[table] == nil {
		return fmt.Errorf("fake iptables: no table %q", table)
	}
	t.Calls++
	t.tables[table][chain] = nil
	return nil
}

func (t *IPTables) DeleteChain(table, chain string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	rules, ok := t.chain(table, chain)
	if !ok || isBuiltin(table, chain) {
		return fmt.Errorf("fake iptables: no user chain %s/%s", table, chain)
	}
	if len(rules) > 0 {
		return fmt.Errorf("fake iptables: chain %s/%s is not empty", table, chain)
	}
	for c, rs := range t.tables[table] {
		for _, r := range rs {
			if strings.HasSuffix(r, " -j "+chain) {
				return fmt.Errorf("fake iptables: chain %s/%s is referenced from %s", table, chain, c)
			}
		}
	}
	t.Calls++
	delete(t.tables[table], chain)
	return nil
}

func (t *IPTables) List(table, chain string) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rules, ok := t.chain(table, chain)
	if !ok {
		return nil, fmt.Errorf("fake iptables: no chain %s/%s", table, chain)
	}
	head := "-N " + chain
	if isBuiltin(table, chain) {
		head = "-P " + chain + " ACCEPT"
	}
	return append([]string{head}, rules...), nil
}

func (t *IPTables) Append(table, chain string, spec ...string) error {
	return t.Insert(table, chain, -1, spec...)
}

// Insert puts the rule at 1-based position pos (-1: at the end).
func (t *IPTables) Insert(table, chain string, pos int, spec ...string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	rules, ok := t.chain(table, chain)
	if !ok {
		return fmt.Errorf("fake iptables: no chain %s/%s", table, chain)
	}
	if err := t.checkTarget(table, spec); err != nil {
		return err
	}
	t.Calls++
	r := rule(chain, spec)
	if pos < 0 || pos > len(rules) {
		t.tables[table][chain] = append(rules, r)
	} else {
		t.tables[table][chain] = slices.Insert(rules, pos-1, r)
	}
	return nil
}

func (t *IPTables) Exists(table, chain string, spec ...string) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.checkTarget(table, spec); err != nil {
		return false, err // as iptables -C: exit status 2
	}
	rules, ok := t.chain(table, chain)
	if !ok {
		return false, fmt.Errorf("fake iptables: no chain %s/%s", table, chain)
	}
	return slices.Contains(rules, rule(chain, spec)), nil
}

func (t *IPTables) Delete(table, chain string, spec ...string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	rules, ok := t.chain(table, chain)
	i := slices.Index(rules, rule(chain, spec))
	if !ok || i < 0 {
		return fmt.Errorf("fake iptables: no rule %q in %s/%s", strings.Join(spec, " "), table, chain)
	}
	t.Calls++
	t.tables[table][chain] = slices.Delete(rules, i, i+1)
	return nil
}

// Render lists every table and chain (sorted) with its rules in order, as `iptables -t T -S` would.
func (t *IPTables) Render() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	for _, table := range []string{"filter", "nat", "raw"} {
		var chains []string
		for c := range t.tables[table] {
			chains = append(chains, c)
		}
		sort.Strings(chains)
		for _, c := range chains {
			fmt.Fprintf(&b, "*%s %s\n", table, c)
			for _, r := range t.tables[table][c] {
				fmt.Fprintf(&b, "  %s\n", r)
			}
		}
	}
	return b.String()
}

// checkTarget refuses, as iptables does, a rule jumping to a chain that does not exist.
func (t *IPTables) checkTarget(table string, spec []string) error {
	i := slices.Index(spec, "-j")
	if i < 0 || i+1 >= len(spec) {
		return nil
	}
	target := spec[i+1]
	if slices.Contains([]string{"ACCEPT", "DROP", "RETURN", "MASQUERADE", "NOTRACK"}, target) {
		return nil
	}
	if _, ok := t.chain(table, target); !ok {
		return fmt.Errorf("fake iptables: chain %s/%s does not exist", table, target)
	}
	return nil
}
