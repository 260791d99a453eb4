package bridge

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ovnet/ov/internal/iptables"
)

// The chains the driver owns.
const (
	ChainForward     = "OV-FORWARD"         // filter: ACCEPT for the bridges' traffic, published ports
	ChainIsolation1  = "OV-ISOLATION-1"     // filter: traffic leaving a bridge for another interface
	ChainIsolation2  = "OV-ISOLATION-2"     // filter: ... that enters another ov bridge is dropped
	ChainDNAT        = "OV-DNAT"            // nat: published ports
	ChainPostrouting = "OV-NAT-POSTROUTING" // nat: MASQUERADE (outbound, hairpin, from 127/8)
	ChainLoopback    = "OV-LOOPBACK"        // raw: drop 127.0.0.0/8 that did not come in on lo
)

// loopbackRules are the whole content of ChainLoopback, the same on every host whatever the state: an
// IPv4 packet whose destination on the wire is in 127.0.0.0/8 and that arrives on any interface but
// lo is dropped before conntrack and NAT see it (RFC 1122: 127/8 never appears outside a
// host). It is what stops a container from reaching the host's services bound to 127.0.0.1 by sending
// to its gateway's MAC (the class of Kubernetes' CVE-2020-8558) wherever route_localnet lets such a
// packet be routed: on a bridge with a port published on 127.0.0.1, or on every interface when an
// administrator (or kube-proxy) set net.ipv4.conf.all.route_localnet=1. It is in raw PREROUTING, not
// filter INPUT as Kubernetes puts it, because there it sees the addresses on the wire, before
// conntrack and NAT: the replies of a legitimate 127.0.0.1 -> published port flow arrive addressed to
// the bridge's gateway (the MASQUERADE address) and pass, so the rule needs no conntrack exception;
// the dropped packets never make a conntrack entry (no table to fill); and no ACCEPT that another
// firewall puts into filter INPUT (an "-i docker0 -j ACCEPT", a policy of ACCEPT) comes before it.
var loopbackRules = []iptables.Rule{
	"! -i lo -d 127.0.0.0/8 -j DROP",
}

type chainRef struct{ table, chain string }

// jump is one rule in a built-in chain that enters an ov chain.
type jump struct {
	table, from, to string
	match           []string
}

// jumps are the only rules the driver puts into built-in chains.
var jumps = []jump{
	{"raw", "PREROUTING", ChainLoopback, nil},
	{"filter", "FORWARD", ChainForward, nil},
	{"nat", "PREROUTING", ChainDNAT, []string{"-m", "addrtype", "--dst-type", "LOCAL"}},
	{"nat", "OUTPUT", ChainDNAT, []string{"-m", "addrtype", "--dst-type", "LOCAL"}},
	{"nat", "POSTROUTING", ChainPostrouting, nil},
}

// chains lists the driver's chains in the order they are synced: a chain is filled before a chain that
// jumps to it; the loopback guard comes first.
var chains = []chainRef{
	{"raw", ChainLoopback},
	{"filter", ChainIsolation2}, {"filter", ChainIsolation1}, {"filter", ChainForward},
	{"nat", ChainDNAT}, {"nat", ChainPostrouting},
}

// ruleSet is the full content of the driver's chains.
type ruleSet map[chainRef][]iptables.Rule

// rulesFor computes the rules of every network and endpoint. nets and eps must be sorted (by name, by
// network and container) so that the result is deterministic. isolateFrom lists further interface
// patterns that traffic from the bridges must not enter.
func rulesFor(nets []*Network, eps []*Endpoint, isolateFrom []string) ruleSet {
	rs := ruleSet{{"raw", ChainLoopback}: slices.Clone(loopbackRules)}
	add := func(table, chain, format string, args ...any) {
		k := chainRef{table, chain}
		rs[k] = append(rs[k], iptables.Rule(fmt.Sprintf(format, args...)))
	}
	byNet := map[string]*Network{}
	for _, n := range nets {
		byNet[n.Name] = n
	}
	add("filter", ChainForward, "-j %s", ChainIsolation1)
	for _, n := range nets {
		b := n.Bridge
		// Isolation: nothing leaves an internal network's subnet; other bridges' traffic goes through
		// stage 2, which drops it when it would enter another ov bridge.
		if n.Internal {
			add("filter", ChainIsolation1, "! -s %s -o %s -j DROP", n.Subnet, b)
			add("filter", ChainIsolation1, "! -d %s -i %s -j DROP", n.Subnet, b)
		} else {
			add("filter", ChainIsolation1, "-i %s ! -o %s -j %s", b, b, ChainIsolation2)
		}
		add("filter", ChainIsolation2, "-o %s -j DROP", b)

		// Explicit ACCEPTs, so the bridge works under a FORWARD policy of DROP (and with br_netfilter,
		// which sends bridged frames through FORWARD too).
		add("filter", ChainForward, "-o %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", b)
		for _, e := range eps {
			if e.Network != n.Name {
				continue
			}
			for _, p := range e.Ports {
				add("filter", ChainForward, "-d %s/32 ! -i %s -o %s -p %s -m %s --dport %d -j ACCEPT", e.IP(), b, b, p.Proto, p.Proto, p.ContainerPort)
			}
		}
		add("filter", ChainForward, "-i %s -o %s -j ACCEPT", b, b)
		if !n.Internal {
			add("filter", ChainForward, "-i %s ! -o %s -j ACCEPT", b, b)
		}
	}
	if len(nets) > 0 {
		for _, pat := range isolateFrom {
			add("filter", ChainIsolation2, "-o %s -j DROP", pat)
		}
	}
	// nat: published ports (PREROUTING and OUTPUT jump here for local destinations), then MASQUERADE.
	for _, e := range eps {
		n := byNet[e.Network]
		if n == nil {
			continue
		}
		for _, p := range e.Ports {
			dst := ""
			if p.HostIP.IsValid() {
				dst = fmt.Sprintf("-d %s/32 ", p.HostIP)
			}
			add("nat", ChainDNAT, "%s-p %s -m %s --dport %d -j DNAT --to-destination %s:%d", dst, p.Proto, p.Proto, p.HostPort, e.IP(), p.ContainerPort)
			// Hairpin: a container reaching its own published port would otherwise see its own
			// address as the source.
			add("nat", ChainPostrouting, "-s %s/32 -d %s/32 -p %s -m %s --dport %d -j MASQUERADE", e.IP(), e.IP(), p.Proto, p.Proto, p.ContainerPort)
		}
	}
	for _, n := range nets {
		// Connections from 127.0.0.1 to a published port (DNAT in OUTPUT, route_localnet on the bridge)
		// leave with the gateway's address, so the container can answer.
		add("nat", ChainPostrouting, "-s 127.0.0.0/8 -o %s -j MASQUERADE", n.Bridge)
		if !n.Internal {
			add("nat", ChainPostrouting, "-s %s ! -o %s -j MASQUERADE", n.Subnet, n.Bridge)
		}
	}
	return rs
}

// String renders the rule set like iptables-save (for tests and debugging).
func (rs ruleSet) String() string {
	var b strings.Builder
	for _, c := range chains {
		for _, r := range rs[c] {
			fmt.Fprintf(&b, "%s: -A %s %s\n", c.table, c.chain, r)
		}
	}
	return b.String()
}

// tables returns the driver's part of each table: its chains holding exactly rs, and the jumps into
// them; or, when absent, no chain and no jump at all.
func (rs ruleSet) tables(absent bool) []iptables.Table {
	var out []iptables.Table
	for _, ch := range chains {
		if len(out) == 0 || out[len(out)-1].Name != ch.table {
			out = append(out, iptables.Table{Name: ch.table})
		}
		c := iptables.Chain{Name: ch.chain, Rules: rs[ch], Absent: absent}
		for _, j := range jumps {
			if j.table == ch.table && j.to == ch.chain {
				c.Jumps = append(c.Jumps, iptables.Jump{From: j.from, Match: j.match})
			}
		}
		t := &out[len(out)-1]
		t.Chains = append(t.Chains, c)
	}
	return out
}

// apply makes the driver's chains hold exactly rs and puts the jumps in place: one read and at most
// one atomic write per table (iptables.Sync).
func (rs ruleSet) apply(c iptables.Client) error { return syncTables(c, rs.tables(false)) }

// removeAll deletes the jumps and the driver's chains.
func removeAll(c iptables.Client) error { return syncTables(c, ruleSet{}.tables(true)) }

func syncTables(c iptables.Client, ts []iptables.Table) error {
	for _, t := range ts {
		if _, err := iptables.Sync(c, t); err != nil {
			return err
		}
	}
	return nil
}
