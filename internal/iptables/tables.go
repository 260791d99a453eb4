package iptables

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

// Tables is the real Client: iptables-save and iptables-restore (legacy or nft, whichever flavour is
// on PATH), run in the network namespace of the calling thread.
type Tables struct {
	save, restore string
}

var _ Client = (*Tables)(nil)

// NewTables finds iptables-save and iptables-restore on PATH.
func NewTables() (*Tables, error) {
	t := &Tables{}
	for _, b := range []struct {
		name string
		path *string
	}{{"iptables-save", &t.save}, {"iptables-restore", &t.restore}} {
		var err error
		if *b.path, err = exec.LookPath(b.name); err != nil {
			return nil, fmt.Errorf("iptables: %w (install the Debian package iptables)", err)
		}
	}
	return t, nil
}

// Save implements Client.
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

// Restore implements Client.
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
