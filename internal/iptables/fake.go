package iptables

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
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

// Fake is an in-memory Client for unit tests. Rules are kept as text, comments included, as
// iptables-save prints them for rules written in that form. Restore enforces what the kernel enforces
// (a chain must exist before it gets rules or is jumped to, a chain that is jumped to or not empty
// cannot be deleted, a built-in chain cannot be deleted) and is all or nothing. String renders every
// table.
type Fake struct {
	mu     sync.Mutex
	tables map[string]*fakeTable
	// Calls counts the Restore calls that succeeded: with the real client, each is one run of
	// iptables-restore.
	Calls int
	// Reads counts the Save calls (runs of iptables-save).
	Reads int
}

type fakeTable struct {
	policy map[string]string // built-in chain -> policy
	chains map[string][]Rule
}

var _ Client = (*Fake)(nil)

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

// SetPolicy sets the policy of a built-in chain (as another program on the host might).
func (f *Fake) SetPolicy(table, chain, policy string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tables[table].policy[chain] = policy
}

// Append adds a rule at the end of chain (as another program on the host might).
func (f *Fake) Append(table, chain string, rulespec ...string) error {
	return f.edit(table, "-A "+chain+" "+strings.Join(rulespec, " "))
}

// Insert inserts a rule at 1-based position pos of chain (as another program on the host might).
func (f *Fake) Insert(table, chain string, pos int, rulespec ...string) error {
	return f.edit(table, fmt.Sprintf("-I %s %d %s", chain, pos, strings.Join(rulespec, " ")))
}

// DeleteById deletes the rule at 1-based position id of chain (as another program on the host might).
func (f *Fake) DeleteById(table, chain string, id int) error {
	return f.edit(table, fmt.Sprintf("-D %s %d", chain, id))
}

// edit applies one restore line without counting it as a call of ov's.
func (f *Fake) edit(table, line string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restore(table, []string{line})
}

// Save implements Client.
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

// Restore implements Client: the lines are applied to a copy of the table, which replaces the table
// only when every line succeeded.
func (f *Fake) Restore(table string, lines []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.restore(table, lines); err != nil {
		return err
	}
	f.Calls++
	return nil
}

func (f *Fake) restore(table string, lines []string) error {
	ft, err := f.table(table)
	if err != nil {
		return err
	}
	tmp := &fakeTable{policy: ft.policy, chains: map[string][]Rule{}}
	for c, rules := range ft.chains {
		tmp.chains[c] = slices.Clone(rules)
	}
	for _, l := range lines {
		if err := tmp.apply(l); err != nil {
			return fmt.Errorf("fake iptables: restore %q: %w", l, err)
		}
	}
	ft.chains = tmp.chains
	return nil
}

// apply runs one restore line on the table.
func (ft *fakeTable) apply(l string) error {
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
	cmd, chain, args := fl[0], fl[1], fl[2:]
	rules, ok := ft.chains[chain]
	if !ok {
		return fmt.Errorf("chain %s does not exist", chain)
	}
	switch cmd {
	case "-A":
		return ft.insert(chain, len(rules)+1, args)
	case "-I":
		pos := 1
		if len(args) > 0 {
			if n, err := strconv.Atoi(args[0]); err == nil {
				pos, args = n, args[1:]
			}
		}
		return ft.insert(chain, pos, args)
	case "-D":
		return ft.delete(chain, args)
	case "-F":
		ft.chains[chain] = nil
	case "-X":
		return ft.deleteChain(chain)
	default:
		return fmt.Errorf("unknown command %s", cmd)
	}
	return nil
}

func (ft *fakeTable) insert(chain string, pos int, spec []string) error {
	rules := ft.chains[chain]
	if pos < 1 || pos > len(rules)+1 {
		return fmt.Errorf("index %d out of range (%d rules)", pos, len(rules))
	}
	if t := target(spec); strings.HasPrefix(t, "OV") {
		if _, ok := ft.chains[t]; !ok {
			return fmt.Errorf("jump target %s does not exist", t)
		}
	}
	ft.chains[chain] = slices.Insert(rules, pos-1, Rule(strings.Join(spec, " ")))
	return nil
}

// delete deletes the rule at position args[0], or the first rule equal to args.
func (ft *fakeTable) delete(chain string, args []string) error {
	rules := ft.chains[chain]
	i := slices.Index(rules, Rule(strings.Join(args, " ")))
	if len(args) == 1 {
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return err
		}
		i = n - 1
	}
	if i < 0 || i >= len(rules) {
		return fmt.Errorf("no rule %q in %s (%d rules)", strings.Join(args, " "), chain, len(rules))
	}
	ft.chains[chain] = slices.Delete(rules, i, i+1)
	return nil
}

func (ft *fakeTable) deleteChain(chain string) error {
	if _, ok := ft.policy[chain]; ok {
		return fmt.Errorf("cannot delete built-in chain %s", chain)
	}
	if len(ft.chains[chain]) > 0 {
		return fmt.Errorf("chain %s is not empty", chain)
	}
	for from, rules := range ft.chains {
		for _, r := range rules {
			if target(r.Spec()) == chain {
				return fmt.Errorf("chain %s is referenced by %s: %q", chain, from, r)
			}
		}
	}
	delete(ft.chains, chain)
	return nil
}

// target returns the chain or target a rule spec jumps or goes to ("" when none).
func target(spec []string) string {
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] == "-j" || spec[i] == "-g" {
			return spec[i+1]
		}
	}
	return ""
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
		order := append(slices.Clone(builtin[t]), custom...)
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

var idRE = regexp.MustCompile(`("` + commentPrefix + `[^:"]+:)[0-9a-f]+"`)

// MaskIDs replaces the hash in every ov comment of s (a rendering of tables) with "#": tests write the
// tables they expect as `--comment "ov:OV-FORWARD:#"` without computing hashes. That the hashes are
// stable is what a second Sync making no edits shows.
func MaskIDs(s string) string { return idRE.ReplaceAllString(s, `${1}#"`) }

// DropComments removes ov's comment from every rule: the tables as the version of ov before comments
// left them (for upgrade tests).
func (f *Fake) DropComments() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ft := range f.tables {
		for c, rules := range ft.chains {
			for i, r := range rules {
				spec := r.Spec()
				if j := slices.Index(spec, "--comment"); j >= 2 && owner(r) != "" {
					ft.chains[c][i] = Rule(strings.Join(slices.Delete(spec, j-2, j+2), " "))
				}
			}
		}
	}
}
