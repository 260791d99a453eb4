package lab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
)

// partitionRules are the iptables rules (table, chain, match) that cut a host off the underlay, made
// in the host's own network namespace: every packet that enters through its underlay link is dropped
// before anything else sees it (raw PREROUTING), and every packet that leaves through it, sent by the
// host or forwarded for a container, is dropped last (mangle POSTROUTING). The agent's rules live in
// filter, nat and its own raw chain (NOTRACK only), so none of them lets a packet past these.
func partitionRules() [][]string {
	mark := []string{"-m", "comment", "--comment", "ovlab partition", "-j", "DROP"}
	return [][]string{
		append([]string{"raw", "PREROUTING", "-i", "eth0"}, mark...),
		append([]string{"mangle", "POSTROUTING", "-o", "eth0"}, mark...),
	}
}

// iptablesIn runs iptables in network namespace ns (never in the machine's own).
func iptablesIn(ns string, table, op, chain string, rule ...string) error {
	args := append([]string{"--net=/run/netns/" + ns, "--", "iptables", "-w", "-t", table, op, chain}, rule...)
	out, err := exec.Command("nsenter", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables -t %s %s %s %s in %s: %v: %s", table, op, chain, strings.Join(rule, " "), ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// partitionedRules returns those of the partition rules present in the host's namespace.
func partitionedRules(h *Host) [][]string {
	var have [][]string
	for _, r := range partitionRules() {
		if iptablesIn(h.Netns, r[0], "-C", r[1], r[2:]...) == nil {
			have = append(have, r)
		}
	}
	return have
}

// Partition cuts the named host off the underlay, as a pulled cable or a broken switch port would:
// iptables rules inside the host's network namespace drop all its underlay traffic, both ways. Its
// processes keep running: the agent and containers stay up but reach no other host, the controller
// or the outside. Heal reverses it.
func (l *Lab) Partition(name string) error {
	h, err := l.Host(name)
	if err != nil {
		return err
	}
	if h.Partitioned || len(partitionedRules(h)) > 0 {
		return fmt.Errorf("host %s is already partitioned; heal it first: %w", name, errdefs.ErrConflict)
	}
	h.Partitioned = true // recorded before it is made
	if err := l.save(); err != nil {
		return err
	}
	for _, r := range partitionRules() {
		if err := iptablesIn(h.Netns, r[0], "-I", r[1], append([]string{"1"}, r[2:]...)...); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes exactly the rules Partition made in the named host's namespace, and nothing else.
// Processes Partition did not touch are not started: start a killed agent with StartAgent.
func (l *Lab) Heal(_ context.Context, name string) error {
	h, err := l.Host(name)
	if err != nil {
		return err
	}
	have := partitionedRules(h)
	if !h.Partitioned && len(have) == 0 {
		return fmt.Errorf("host %s is not partitioned: %w", name, errdefs.ErrConflict)
	}
	for _, r := range have {
		if err := iptablesIn(h.Netns, r[0], "-D", r[1], r[2:]...); err != nil {
			return err
		}
	}
	h.Partitioned = false
	return l.save()
}
