package iptables

import (
	"fmt"
	"slices"
	"strings"

	goiptables "github.com/coreos/go-iptables/iptables"
)

// Client is the part of *goiptables.IPTables that ov uses. Table and chain names are iptables' own
// ("filter", "nat"; "FORWARD", "OV-FORWARD"). A rule spec is the list of arguments after the chain name.
type Client interface {
	// ChainExists reports whether chain exists in table.
	ChainExists(table, chain string) (bool, error)
	// NewChain creates chain; it fails if the chain exists.
	NewChain(table, chain string) error
	// ClearAndDeleteChain flushes and deletes chain; a missing chain is not an error.
	ClearAndDeleteChain(table, chain string) error
	// List returns chain as `iptables -S chain` prints it: "-N chain" (or "-P chain POLICY") and then
	// one "-A chain spec..." line per rule.
	List(table, chain string) ([]string, error)
	// Exists reports whether the rule is in chain (iptables -C).
	Exists(table, chain string, rulespec ...string) (bool, error)
	// Insert inserts the rule at 1-based position pos.
	Insert(table, chain string, pos int, rulespec ...string) error
	// Delete deletes the first rule matching rulespec.
	Delete(table, chain string, rulespec ...string) error
	// DeleteById deletes the rule at 1-based position id.
	DeleteById(table, chain string, id int) error
}

var _ Client = (*goiptables.IPTables)(nil)

// New returns the real client: the IPv4 iptables binary on PATH, run with --wait.
func New() (*goiptables.IPTables, error) {
	c, err := goiptables.New(goiptables.IPFamily(goiptables.ProtocolIPv4), goiptables.Timeout(30))
	if err != nil {
		return nil, fmt.Errorf("iptables: %w (install the Debian package iptables)", err)
	}
	return c, nil
}

// Rule is one rule spec as a single line in canonical `iptables -S` form without the "-A CHAIN" prefix,
// e.g. "-o ov0 -j ACCEPT". Arguments are separated by single spaces and contain no spaces themselves.
type Rule string

// Spec splits the rule into arguments.
func (r Rule) Spec() []string { return strings.Fields(string(r)) }

// Rules returns chain's rules in order, without the "-A chain " prefix.
func Rules(c Client, table, chain string) ([]Rule, error) {
	lines, err := c.List(table, chain)
	if err != nil {
		return nil, fmt.Errorf("iptables: list %s/%s: %w", table, chain, err)
	}
	prefix := "-A " + chain + " "
	var out []Rule
	for _, l := range lines {
		if s, ok := strings.CutPrefix(l, prefix); ok {
			out = append(out, Rule(strings.Join(strings.Fields(s), " ")))
		}
	}
	return out, nil
}

// EnsureChain creates chain in table unless it exists.
func EnsureChain(c Client, table, chain string) error {
	ok, err := c.ChainExists(table, chain)
	if err != nil {
		return fmt.Errorf("iptables: look up chain %s/%s: %w", table, chain, err)
	}
	if ok {
		return nil
	}
	if err := c.NewChain(table, chain); err != nil {
		// Another process may have won the race; accept its chain.
		if ok, err2 := c.ChainExists(table, chain); err2 == nil && ok {
			return nil
		}
		return fmt.Errorf("iptables: create chain %s/%s: %w", table, chain, err)
	}
	return nil
}

// SyncChain makes chain (created if missing) hold exactly rules, in order, and returns how many rules it
// inserted or deleted (0 when the chain already matched). It walks the chain once and edits only where
// it differs: a wanted rule that is missing is inserted before the stale rule at its place is deleted, so
// a rule that is replaced never leaves a gap; a stale rule is deleted where the next wanted rule is
// already further down. Adding or removing one rule in the middle costs one iptables call.
func SyncChain(c Client, table, chain string, rules []Rule) (int, error) {
	cur, err := Rules(c, table, chain)
	if err != nil {
		// Most likely the chain does not exist yet (listing first saves a run of iptables per sync).
		if err := EnsureChain(c, table, chain); err != nil {
			return 0, err
		}
		if cur, err = Rules(c, table, chain); err != nil {
			return 0, err
		}
	}
	changes := 0
	for _, e := range plan(cur, rules) {
		if e.insert {
			if err := c.Insert(table, chain, e.pos, e.rule.Spec()...); err != nil {
				return changes, fmt.Errorf("iptables: insert %q into %s/%s: %w", e.rule, table, chain, err)
			}
		} else if err := c.DeleteById(table, chain, e.pos); err != nil {
			return changes, fmt.Errorf("iptables: delete stale rule %q from %s/%s: %w", e.rule, table, chain, err)
		}
		changes++
	}
	return changes, nil
}

// edit is one step that turns a chain into the wanted one: insert rule at 1-based position pos, or
// delete the rule at pos; positions count after the edits before it.
type edit struct {
	insert bool
	pos    int
	rule   Rule
}

// plan returns the edits that make chain content cur hold exactly rules, in order (see SyncChain).
func plan(cur, rules []Rule) []edit {
	cur = slices.Clone(cur)
	want := make([]Rule, len(rules))
	for i, r := range rules {
		want[i] = Rule(strings.Join(r.Spec(), " "))
	}
	var out []edit
	for i, j := 0, 0; i < len(want) || j < len(cur); {
		switch {
		case i < len(want) && j < len(cur) && cur[j] == want[i]:
			i, j = i+1, j+1
		case i < len(want) && (j >= len(cur) || !slices.Contains(cur[j+1:], want[i]) || slices.Contains(want[i+1:], cur[j])):
			// want[i] is not further down, or cur[j] is still wanted later: insert want[i] here.
			out = append(out, edit{insert: true, pos: j + 1, rule: want[i]})
			cur = slices.Insert(cur, j, want[i])
			i, j = i+1, j+1
		default:
			// cur[j] is wanted nowhere after this point.
			out = append(out, edit{pos: j + 1, rule: cur[j]})
			cur = slices.Delete(cur, j, j+1)
		}
	}
	return out
}

// EnsureJump makes sure chain `from` (a built-in chain) holds the rule "match... -j to", and inserts it
// at the top if it is missing. A jump that is present but not first is left where it is: another
// program may have put its own rule above on purpose, and moving ours would fight it.
func EnsureJump(c Client, table, from string, to string, match ...string) error {
	spec := append(append([]string{}, match...), "-j", to)
	ok, err := c.Exists(table, from, spec...)
	if err != nil {
		return fmt.Errorf("iptables: check jump %s/%s -> %s: %w", table, from, to, err)
	}
	if ok {
		return nil
	}
	if err := c.Insert(table, from, 1, spec...); err != nil {
		return fmt.Errorf("iptables: insert jump %s/%s -> %s: %w", table, from, to, err)
	}
	return nil
}

// RemoveJump deletes every copy of the jump rule "match... -j to" from chain `from`; none is not an
// error.
func RemoveJump(c Client, table, from, to string, match ...string) error {
	spec := append(append([]string{}, match...), "-j", to)
	for {
		ok, err := c.Exists(table, from, spec...)
		if err != nil {
			if exists, err2 := c.ChainExists(table, to); err2 == nil && !exists {
				return nil // iptables -C fails when the target chain is gone: nothing can jump to it.
			}
			return fmt.Errorf("iptables: check jump %s/%s -> %s: %w", table, from, to, err)
		}
		if !ok {
			return nil
		}
		if err := c.Delete(table, from, spec...); err != nil {
			return fmt.Errorf("iptables: delete jump %s/%s -> %s: %w", table, from, to, err)
		}
	}
}

// DeleteChain flushes and deletes chain; a missing chain is not an error. Jumps to it must be gone.
func DeleteChain(c Client, table, chain string) error {
	if err := c.ClearAndDeleteChain(table, chain); err != nil {
		return fmt.Errorf("iptables: delete chain %s/%s: %w", table, chain, err)
	}
	return nil
}
