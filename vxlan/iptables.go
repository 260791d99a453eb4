package vxlan

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// IPTables is the handful of iptables calls the driver makes, with the semantics of the same-named
// methods of *github.com/coreos/go-iptables/iptables.IPTables, which satisfies it. Rules are given
// in the form `iptables -S` prints them, so that List can be compared with the wanted rules.
type IPTables interface {
	ChainExists(table, chain string) (bool, error)
	ClearChain(table, chain string) error // creates the chain, or flushes it
	DeleteChain(table, chain string) error
	List(table, chain string) ([]string, error)
	Append(table, chain string, rulespec ...string) error
	Insert(table, chain string, pos int, rulespec ...string) error
	Exists(table, chain string, rulespec ...string) (bool, error)
	Delete(table, chain string, rulespec ...string) error
}

// The chains ov owns. Built-in chains get one jump rule each, nothing else.
const (
	ChainInput   = "OV-OVERLAY-IN"  // filter: VXLAN only from known VTEPs
	ChainForward = "OV-OVERLAY-FWD" // filter: forwarding within, out of and between overlay networks
	ChainNAT     = "OV-OVERLAY-NAT" // nat: MASQUERADE of traffic leaving a non-internal network
	ChainRaw     = "OV-OVERLAY-RAW" // raw: no connection tracking for VXLAN and traffic within a network
)

type chainSpec struct {
	table, chain string
	from         []string   // built-in chains that jump here
	rules        [][]string // in `iptables -S` form, without "-A CHAIN"
	remove       bool       // the chain must not exist
}

// wantedChains computes the rules of ov's chains for the networks set up on this host.
func wantedChains(nets []NetworkState, local netip.Addr, port int, isolateFrom []string, noTrack bool) []chainSpec {
	p := strconv.Itoa(port)
	var in, fwd, nat, raw [][]string

	var vteps []netip.Addr
	for _, ns := range nets {
		vteps = append(vteps, remoteVTEPs(ns, local)...)
	}
	slices.SortFunc(vteps, netip.Addr.Compare)
	for _, v := range slices.Compact(vteps) {
		in = append(in, []string{"-s", v.String() + "/32", "-p", "udp", "-m", "udp", "--dport", p, "-j", "ACCEPT"})
	}
	in = append(in, []string{"-p", "udp", "-m", "udp", "--dport", p, "-j", "DROP"})

	// Bridged traffic inside a network (seen here when br_netfilter is loaded) is accepted first.
	for _, ns := range nets {
		br := BridgeName(ns.Network.VNI)
		fwd = append(fwd, []string{"-i", br, "-o", br, "-j", "ACCEPT"})
	}
	fwd = append(fwd,
		[]string{"-o", "ovbr+", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		[]string{"-i", "ovbr+", "-o", "ovbr+", "-j", "DROP"}) // isolation between overlay networks
	for _, ns := range nets {
		br := BridgeName(ns.Network.VNI)
		for _, other := range isolateFrom {
			fwd = append(fwd, []string{"-i", br, "-o", other, "-j", "DROP"})
		}
		verdict := "ACCEPT"
		if ns.Network.Internal {
			verdict = "DROP"
		}
		fwd = append(fwd, []string{"-i", br, "-j", verdict})
		if !ns.Network.Internal {
			nat = append(nat, []string{"-s", ns.Network.Subnet.Masked().String(), "!", "-o", br, "-j", "MASQUERADE"})
		}
	}
	fwd = append(fwd, []string{"-o", "ovbr+", "-j", "DROP"}) // nothing else enters an overlay network

	specs := []chainSpec{
		{table: "filter", chain: ChainInput, from: []string{"INPUT"}, rules: in},
		{table: "filter", chain: ChainForward, from: []string{"FORWARD"}, rules: fwd},
		{table: "nat", chain: ChainNAT, from: []string{"POSTROUTING"}, rules: nat},
	}
	// Connection tracking buys nothing for the tunnel packets (stateless rules) and for frames bridged
	// within a network (accepted by interface); skipping it shortens every packet's path. Traffic from
	// and to the gateway (the host itself) and leaving the subnet (MASQUERADE) stays tracked.
	raw = append(raw, []string{"-p", "udp", "-m", "udp", "--dport", p, "-j", "NOTRACK"})
	for _, ns := range nets {
		n := ns.Network
		raw = append(raw,
			[]string{"-s", n.Gateway.String() + "/32", "-j", "RETURN"},
			[]string{"-d", n.Gateway.String() + "/32", "-j", "RETURN"},
			[]string{"-s", n.Subnet.Masked().String(), "-d", n.Subnet.Masked().String(), "-j", "NOTRACK"})
	}
	rawSpec := chainSpec{table: "raw", chain: ChainRaw, from: []string{"PREROUTING", "OUTPUT"}, rules: raw}
	if noTrack {
		specs = append(specs, rawSpec)
	} else {
		specs = append(specs, chainSpec{table: "raw", chain: ChainRaw, from: rawSpec.from, remove: true})
	}
	return specs
}

// ensureChains makes ov's chains hold exactly the wanted rules, in order, and the built-in chains
// jump to them. A chain that differs is rewritten (flush, then append), which leaves a window of
// microseconds without its rules.
func ensureChains(ipt IPTables, specs []chainSpec) (changed bool, err error) {
	for _, c := range specs {
		if c.remove {
			ch, err := removeChains(ipt, []chainSpec{c})
			changed = changed || ch
			if err != nil {
				return changed, err
			}
			continue
		}
		ok, err := ipt.ChainExists(c.table, c.chain)
		if err != nil {
			return changed, fmt.Errorf("iptables: look for chain %s/%s: %w", c.table, c.chain, err)
		}
		var have []string
		if ok {
			if have, err = ipt.List(c.table, c.chain); err != nil {
				return changed, fmt.Errorf("iptables: list chain %s/%s: %w", c.table, c.chain, err)
			}
		}
		want := []string{"-N " + c.chain}
		for _, r := range c.rules {
			want = append(want, "-A "+c.chain+" "+strings.Join(r, " "))
		}
		if !slices.Equal(have, want) {
			changed = true
			if err := ipt.ClearChain(c.table, c.chain); err != nil {
				return changed, fmt.Errorf("iptables: create or flush chain %s/%s: %w", c.table, c.chain, err)
			}
			for _, r := range c.rules {
				if err := ipt.Append(c.table, c.chain, r...); err != nil {
					return changed, fmt.Errorf("iptables: append to %s/%s rule %q: %w", c.table, c.chain, strings.Join(r, " "), err)
				}
			}
		}
		jump := []string{"-j", c.chain}
		for _, from := range c.from {
			if ok, err := ipt.Exists(c.table, from, jump...); err != nil {
				return changed, fmt.Errorf("iptables: look for jump %s/%s -> %s: %w", c.table, from, c.chain, err)
			} else if !ok {
				changed = true
				if err := ipt.Insert(c.table, from, 1, jump...); err != nil {
					return changed, fmt.Errorf("iptables: insert jump %s/%s -> %s: %w", c.table, from, c.chain, err)
				}
			}
		}
	}
	return changed, nil
}

// removeChains deletes ov's jump rules and chains, whichever exist.
func removeChains(ipt IPTables, specs []chainSpec) (changed bool, err error) {
	for _, c := range specs {
		ok, err := ipt.ChainExists(c.table, c.chain)
		if err != nil {
			return changed, fmt.Errorf("iptables: look for chain %s/%s: %w", c.table, c.chain, err)
		}
		if !ok {
			continue // iptables allows no jump to a missing chain
		}
		jump := []string{"-j", c.chain}
		for _, from := range c.from {
			for {
				ok, err := ipt.Exists(c.table, from, jump...)
				if err != nil {
					return changed, fmt.Errorf("iptables: look for jump %s/%s -> %s: %w", c.table, from, c.chain, err)
				}
				if !ok {
					break
				}
				changed = true
				if err := ipt.Delete(c.table, from, jump...); err != nil {
					return changed, fmt.Errorf("iptables: delete jump %s/%s -> %s: %w", c.table, from, c.chain, err)
				}
			}
		}
		changed = true
		if err := ipt.ClearChain(c.table, c.chain); err != nil {
			return changed, fmt.Errorf("iptables: flush chain %s/%s: %w", c.table, c.chain, err)
		}
		if err := ipt.DeleteChain(c.table, c.chain); err != nil {
			return changed, fmt.Errorf("iptables: delete chain %s/%s: %w", c.table, c.chain, err)
		}
	}
	return changed, nil
}

// remoteVTEPs lists the other hosts serving the network: its VTEPs and its peers' VTEPs, sorted,
// without LocalIP.
func remoteVTEPs(ns NetworkState, local netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, v := range ns.VTEPs {
		out = append(out, v)
	}
	for _, p := range ns.Peers {
		out = append(out, p.VTEP)
	}
	out = slices.DeleteFunc(out, func(a netip.Addr) bool { return a == local })
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
