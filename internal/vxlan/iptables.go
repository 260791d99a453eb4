package vxlan

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ovnet/ov/internal/iptables"
)

// The chains ov owns. Built-in chains get one jump rule each, nothing else.
const (
	ChainInput   = "OV-OVERLAY-IN"  // filter: VXLAN only from known VTEPs
	ChainForward = "OV-OVERLAY-FWD" // filter: forwarding within, out of and between overlay networks
	ChainNAT     = "OV-OVERLAY-NAT" // nat: MASQUERADE of traffic leaving a non-internal network
	ChainRaw     = "OV-OVERLAY-RAW" // raw: no connection tracking for the VXLAN packets
)

type chainSpec struct {
	table, chain string
	from         []string // built-in chains that jump here
	rules        []iptables.Rule
	remove       bool // the chain must not exist
}

// wantedChains computes the rules of ov's chains for the networks set up on this host.
func wantedChains(nets []NetworkState, local netip.Addr, port int, isolateFrom []string, noTrack bool) []chainSpec {
	p := strconv.Itoa(port)
	var in, fwd, nat, raw [][]string // rules as argument lists, in `iptables -S` form

	var vteps []netip.Addr
	for _, ns := range nets {
		vteps = append(vteps, remoteVTEPs(ns, local)...)
	}
	slices.SortFunc(vteps, netip.Addr.Compare)
	for _, v := range slices.Compact(vteps) {
		in = append(in, []string{"-s", v.String() + "/32", "-p", "udp", "-m", "udp", "--dport", p, "-j", "ACCEPT"})
	}
	in = append(in, []string{"-p", "udp", "-m", "udp", "--dport", p, "-j", "DROP"})

	// Traffic between the containers of a network never reaches netfilter (the macvlans of a VXLAN
	// device switch it among themselves, the device tunnels it): these rules see only what is routed
	// through a gateway interface ovgw-<vni>, into or out of a network.
	fwd = append(fwd,
		[]string{"-o", "ovgw+", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		[]string{"-i", "ovgw+", "-o", "ovgw+", "-j", "DROP"}) // isolation between overlay networks
	for _, ns := range nets {
		gw := GatewayName(ns.Network.VNI)
		for _, other := range isolateFrom {
			fwd = append(fwd, []string{"-i", gw, "-o", other, "-j", "DROP"})
		}
		verdict := "ACCEPT"
		if ns.Network.Internal {
			verdict = "DROP"
		}
		fwd = append(fwd, []string{"-i", gw, "-j", verdict})
		if !ns.Network.Internal {
			nat = append(nat, []string{"-s", ns.Network.Subnet.Masked().String(), "!", "-o", gw, "-j", "MASQUERADE"})
		}
	}
	fwd = append(fwd, []string{"-o", "ovgw+", "-j", "DROP"}) // nothing else enters an overlay network

	specs := []chainSpec{
		{table: "filter", chain: ChainInput, from: []string{"INPUT"}, rules: toRules(in)},
		{table: "filter", chain: ChainForward, from: []string{"FORWARD"}, rules: toRules(fwd)},
		{table: "nat", chain: ChainNAT, from: []string{"POSTROUTING"}, rules: toRules(nat)},
	}
	// Connection tracking buys nothing for the tunnel packets (stateless rules): skipping it shortens
	// every packet's path. Traffic routed through a gateway stays tracked (RELATED,ESTABLISHED,
	// MASQUERADE).
	raw = append(raw, []string{"-p", "udp", "-m", "udp", "--dport", p, "-j", "NOTRACK"})
	rawSpec := chainSpec{table: "raw", chain: ChainRaw, from: []string{"PREROUTING", "OUTPUT"}, rules: toRules(raw)}
	if noTrack {
		specs = append(specs, rawSpec)
	} else {
		specs = append(specs, chainSpec{table: "raw", chain: ChainRaw, from: rawSpec.from, remove: true})
	}
	return specs
}

func toRules(specs [][]string) []iptables.Rule {
	out := make([]iptables.Rule, len(specs))
	for i, r := range specs {
		out[i] = iptables.Rule(strings.Join(r, " "))
	}
	return out
}

// ensureChains makes ov's chains hold exactly the wanted rules, in order (editing only where they
// differ), makes the built-in chains jump to them, and removes the chains marked remove. It returns
// the number of rules it changed in ov's chains.
func ensureChains(c iptables.Client, specs []chainSpec) (changes int, err error) {
	for _, s := range specs {
		if s.remove {
			n, err := removeChains(c, []chainSpec{s})
			changes += n
			if err != nil {
				return changes, err
			}
			continue
		}
		n, err := iptables.SyncChain(c, s.table, s.chain, s.rules)
		changes += n
		if err != nil {
			return changes, err
		}
		for _, from := range s.from {
			if err := iptables.EnsureJump(c, s.table, from, s.chain); err != nil {
				return changes, err
			}
		}
	}
	return changes, nil
}

// removeChains deletes ov's jump rules and chains, whichever exist; it returns how many chains it
// deleted.
func removeChains(c iptables.Client, specs []chainSpec) (changes int, err error) {
	for _, s := range specs {
		ok, err := c.ChainExists(s.table, s.chain)
		if err != nil {
			return changes, fmt.Errorf("iptables: look for chain %s/%s: %w", s.table, s.chain, err)
		}
		if !ok {
			continue
		}
		for _, from := range s.from {
			if err := iptables.RemoveJump(c, s.table, from, s.chain); err != nil {
				return changes, err
			}
		}
		if err := iptables.DeleteChain(c, s.table, s.chain); err != nil {
			return changes, err
		}
		changes++
	}
	return changes, nil
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
