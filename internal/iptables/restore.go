package iptables

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	goiptables "github.com/coreos/go-iptables/iptables"
)

// Restorer is implemented by clients that read a whole table in one step and apply many edits to it
// in one atomic step.
type Restorer interface {
	// Save returns every chain of table (built-in ones included) with its rules in the canonical form
	// of Rules, as `iptables-save -t table` prints them.
	Save(table string) (map[string][]Rule, error)
	// Restore applies lines to table in one transaction, as `iptables-restore --noflush` does: ":CHAIN
	// - [0:0]" (create; only for chains that do not exist), "-I CHAIN POS RULE", "-D CHAIN POS",
	// "-A CHAIN RULE". Either all lines take effect or none.
	Restore(table string, lines []string) error
}

// ChainRules is the whole content of one chain.
type ChainRules struct {
	Chain string
	Rules []Rule
}

// Jump is a rule in a built-in chain that enters one of the caller's chains: "Match... -j To" in From.
type Jump struct {
	From, To string
	Match    []string
}

func (j Jump) rule() Rule { return Rule(strings.Join(append(slices.Clone(j.Match), "-j", j.To), " ")) }

// SyncTable is SyncChain for several chains of one table, plus EnsureJump for the jumps into them,
// done with one Save and at most one Restore: the same edits as SyncChain (so a rule that is replaced
// never leaves a gap, and nothing changes when everything matches: no Restore at all), but applied
// atomically, and paying the kernel's commit once per table instead of once per rule. It returns the
// number of edits made.
func SyncTable(r Restorer, table string, chains []ChainRules, jumps []Jump) (int, error) {
	cur, err := r.Save(table)
	if err != nil {
		return 0, fmt.Errorf("iptables: read table %s: %w", table, err)
	}
	var lines []string
	for _, c := range chains {
		if _, ok := cur[c.Chain]; !ok {
			lines = append(lines, ":"+c.Chain+" - [0:0]")
		}
	}
	edits := 0
	for _, c := range chains {
		for _, e := range plan(cur[c.Chain], c.Rules) {
			if e.insert {
				lines = append(lines, fmt.Sprintf("-I %s %d %s", c.Chain, e.pos, e.rule))
			} else {
				lines = append(lines, fmt.Sprintf("-D %s %d", c.Chain, e.pos))
			}
			edits++
		}
	}
	for _, j := range jumps {
		if !slices.Contains(cur[j.From], j.rule()) {
			lines = append(lines, fmt.Sprintf("-I %s 1 %s", j.From, j.rule()))
			edits++
		}
	}
	if len(lines) == 0 {
		return 0, nil
	}
	if err := r.Restore(table, lines); err != nil {
		return 0, err
	}
	return edits, nil
}

// Tables is the real Client (the iptables binary through go-iptables) with Restorer
// (iptables-save and iptables-restore of the same flavour, legacy or nft, found on PATH).
type Tables struct {
	*goiptables.IPTables
	save, restore string
}

var (
	_ Client   = (*Tables)(nil)
	_ Restorer = (*Tables)(nil)
)

// NewTables returns the real client with Restorer.
func NewTables() (*Tables, error) {
	c, err := New()
	if err != nil {
		return nil, err
	}
	t := &Tables{IPTables: c}
	for _, b := range []struct {
		name string
		path *string
	}{{"iptables-save", &t.save}, {"iptables-restore", &t.restore}} {
		if *b.path, err = exec.LookPath(b.name); err != nil {
			return nil, fmt.Errorf("iptables: %w (install the Debian package iptables)", err)
		}
	}
	return t, nil
}

// Save implements Restorer.
func (t *Tables) Save(table string) (map[string][]Rule, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(t.save, "-t", table)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("iptables-save -t %s: %v: %s", table, err, strings.TrimSpace(errb.String()))
	}
	return parseSave(out.String()), nil
}

// parseSave reads iptables-save output for one table: ":CHAIN POLICY [counters]" lines name the chains,
// "-A CHAIN RULE" lines are their rules.
func parseSave(s string) map[string][]Rule {
	chains := map[string][]Rule{}
	for _, l := range strings.Split(s, "\n") {
		if name, ok := strings.CutPrefix(l, ":"); ok {
			if f := strings.Fields(name); len(f) > 0 {
				chains[f[0]] = chains[f[0]]
			}
		} else if rest, ok := strings.CutPrefix(l, "-A "); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				chains[f[0]] = append(chains[f[0]], Rule(strings.Join(f[1:], " ")))
			}
		}
	}
	return chains
}

// Restore implements Restorer.
func (t *Tables) Restore(table string, lines []string) error {
	cmd := exec.Command(t.restore, "--noflush", "--wait")
	cmd.Stdin = strings.NewReader("*" + table + "\n" + strings.Join(lines, "\n") + "\nCOMMIT\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables-restore of %d lines into table %s: %v: %s", len(lines), table, err, strings.TrimSpace(out.String()))
	}
	return nil
}
