package iptables

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Client reads and writes whole tables. Table and chain names are iptables' own ("filter", "nat";
// "FORWARD", "OV-FORWARD").
type Client interface {
	// Save returns every chain of table (built-in ones included) with its rules, in order, as
	// `iptables-save -t table` prints them without the "-A CHAIN" prefix.
	Save(table string) (map[string][]Rule, error)
	// Restore applies lines to table in one transaction, as `iptables-restore --noflush` does:
	// ":CHAIN - [0:0]" (create, or flush an existing chain), "-I CHAIN POS RULE", "-A CHAIN RULE",
	// "-D CHAIN POS", "-D CHAIN RULE" (the first rule equal to RULE), "-F CHAIN", "-X CHAIN". Either
	// every line takes effect or none.
	Restore(table string, lines []string) error
}

// Rule is one rule spec without the "-A CHAIN" prefix, e.g. "-o ov0 -j ACCEPT". Arguments are separated
// by spaces and contain none; iptables-save quotes some (ov's comment, a u32 expression), which ov
// writes without quotes except its comment: rules are compared by their comment, never by text.
type Rule string

// Spec splits the rule into arguments.
func (r Rule) Spec() []string { return strings.Fields(string(r)) }

// Table is the part of one table that ov owns, as it must be.
type Table struct {
	Name   string // "filter", "nat", "raw", ...
	Chains []Chain
}

// Chain is one chain ov owns: it must hold exactly Rules, in order, and the built-in chains must jump
// to it as Jumps say; or, when Absent, neither the chain nor any jump to it may exist.
type Chain struct {
	Name   string
	Rules  []Rule
	Jumps  []Jump
	Absent bool
}

// Jump is a rule "Match... -j <chain>" in the built-in chain From.
type Jump struct {
	From  string
	Match []string
}

// commentPrefix starts the comment on every rule ov writes.
const commentPrefix = "ov:"

// Tag returns r as ov writes it into chain (the ov chain r belongs to: the one it is in, or for a jump
// the one it enters): with the match `-m comment --comment "ov:<owner>:<id>"` before the target, id a
// hash of in and r. This is also the text iptables-save prints for the rule when r is in that form.
func Tag(owner, in string, r Rule) Rule {
	spec := r.Spec()
	sum := sha256.Sum256([]byte(in + "\x00" + strings.Join(spec, " ")))
	comment := []string{"-m", "comment", "--comment", `"` + commentPrefix + owner + ":" + hex.EncodeToString(sum[:6]) + `"`}
	at := len(spec)
	for i, a := range spec {
		if a == "-j" || a == "-g" {
			at = i
			break
		}
	}
	return Rule(strings.Join(slices.Insert(spec, at, comment...), " "))
}

// owner returns the ov chain a rule belongs to according to its comment, or "" when it has no ov
// comment.
func owner(r Rule) string {
	spec := r.Spec()
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] != "--comment" {
			continue
		}
		c := strings.Trim(spec[i+1], `"`)
		if rest, ok := strings.CutPrefix(c, commentPrefix); ok {
			if o, _, ok := strings.Cut(rest, ":"); ok {
				return o
			}
		}
	}
	return ""
}

// id returns the comment that identifies an ov rule, or "" for a rule without ov's comment.
func id(r Rule) string {
	if owner(r) == "" {
		return ""
	}
	spec := r.Spec()
	i := slices.Index(spec, "--comment")
	return strings.Trim(spec[i+1], `"`)
}

func (j Jump) rule(to string) Rule {
	return Rule(strings.Join(append(slices.Clone(j.Match), "-j", to), " "))
}

// Sync makes the part of table t.Name that ov owns what t says, with one Save and at most one Restore
// (none when everything matches), and returns the number of rules and chains it added or deleted.
// In ov's chains a wanted rule that is missing is inserted before a stale rule at its place is
// deleted, and the whole edit is one transaction: traffic that both versions accept is never dropped.
func Sync(c Client, t Table) (int, error) {
	cur, err := c.Save(t.Name)
	if err != nil {
		return 0, fmt.Errorf("iptables: read table %s: %w", t.Name, err)
	}
	// Order matters within the transaction: chains exist before rules and jumps refer to them, jumps
	// to a chain that goes are deleted before it, and chains that go are all flushed before any is
	// deleted (they may jump to each other).
	var create, rules, flush, del []string
	for _, ch := range t.Chains {
		_, exists := cur[ch.Name]
		switch {
		case ch.Absent && exists:
			flush = append(flush, "-F "+ch.Name)
			del = append(del, "-X "+ch.Name)
		case !ch.Absent && !exists:
			create = append(create, ":"+ch.Name+" - [0:0]")
		}
		if !ch.Absent {
			rules = append(rules, chainEdits(ch, cur[ch.Name])...)
		}
	}
	jumps := jumpEdits(t.Chains, cur)
	lines := slices.Concat(create, rules, jumps, flush, del)
	if len(lines) == 0 {
		return 0, nil
	}
	if err := c.Restore(t.Name, lines); err != nil {
		return 0, fmt.Errorf("iptables: update table %s: %w", t.Name, err)
	}
	return len(create) + len(rules) + len(jumps) + len(del), nil
}

// chainEdits returns the lines that make ov's chain ch, now holding cur, hold exactly ch.Rules
// (tagged), comparing rules by their ov comment.
func chainEdits(ch Chain, cur []Rule) []string {
	tagged := map[Rule]Rule{} // id -> rule as written
	want := make([]Rule, len(ch.Rules))
	for i, r := range ch.Rules {
		tr := Tag(ch.Name, ch.Name, r)
		want[i] = Rule(id(tr))
		tagged[want[i]] = tr
	}
	have := make([]Rule, len(cur))
	for i, r := range cur {
		if have[i] = Rule(id(r)); have[i] == "" || owner(r) != ch.Name {
			have[i] = "untagged " + r // never equal to a wanted id
		}
	}
	var out []string
	for _, e := range plan(have, want) {
		if e.insert {
			out = append(out, fmt.Sprintf("-I %s %d %s", ch.Name, e.pos, tagged[e.rule]))
		} else {
			out = append(out, fmt.Sprintf("-D %s %d", ch.Name, e.pos))
		}
	}
	return out
}

// jumpEdits returns the lines that put the wanted jumps into the built-in chains and delete ov's
// other rules there (stale or duplicate tagged jumps to these chains, and the untagged jumps of the
// version before comments). Deletion is by rule, not position, so that it holds even when another
// program edited the chain since the Save.
func jumpEdits(chains []Chain, cur map[string][]Rule) []string {
	owned := map[string]bool{}
	want := map[string][]Rule{}          // built-in chain -> tagged jumps, in order
	legacy := map[string]map[Rule]bool{} // built-in chain -> untagged jumps of the old version
	for _, ch := range chains {
		owned[ch.Name] = true
		for _, j := range ch.Jumps {
			r := j.rule(ch.Name)
			if legacy[j.From] == nil {
				legacy[j.From] = map[Rule]bool{}
			}
			legacy[j.From][Rule(strings.Join(r.Spec(), " "))] = true
			if !ch.Absent {
				want[j.From] = append(want[j.From], Tag(ch.Name, j.From, r))
			}
		}
	}
	var from []string
	for name := range cur {
		if !owned[name] {
			from = append(from, name)
		}
	}
	sort.Strings(from)
	var out []string
	for _, name := range from {
		kept := map[Rule]bool{}
		var drop []string
		for _, r := range cur[name] {
			ours := owned[owner(r)]
			if !ours && !(owner(r) == "" && legacy[name][r]) {
				continue
			}
			if ours && slices.ContainsFunc(want[name], func(w Rule) bool { return id(w) == id(r) }) && !kept[Rule(id(r))] {
				kept[Rule(id(r))] = true
				continue
			}
			drop = append(drop, fmt.Sprintf("-D %s %s", name, r))
		}
		ws := want[name]
		for i := len(ws) - 1; i >= 0; i-- {
			if !kept[Rule(id(ws[i]))] {
				out = append(out, fmt.Sprintf("-I %s 1 %s", name, ws[i]))
			}
		}
		out = append(out, drop...)
	}
	return out
}

// edit is one step that turns a chain into the wanted one: insert rule at 1-based position pos, or
// delete the rule at pos; positions count after the edits before it.
type edit struct {
	insert bool
	pos    int
	rule   Rule
}

// plan returns the edits that make chain content cur hold exactly want, in order, with the fewest
// edits a single pass finds: a wanted rule that is missing is inserted before the stale rule at its
// place is deleted; a stale rule is deleted where the next wanted rule is already further down.
func plan(cur, want []Rule) []edit {
	cur = slices.Clone(cur)
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
