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
	ChainInput    = "OV-OVERLAY-IN"    // filter: VXLAN only on the underlay, to LocalIP, from a VTEP serving its VNI
	ChainForward  = "OV-OVERLAY-FWD"   // filter: forwarding within, out of and between overlay networks
	ChainNAT      = "OV-OVERLAY-NAT"   // nat: MASQUERADE of traffic leaving a non-internal network
	ChainRaw      = "OV-OVERLAY-RAW"   // raw OUTPUT: no connection tracking for the VXLAN packets sent
	ChainRawGuard = "OV-OVERLAY-GUARD" // raw PREROUTING: no VXLAN from any interface but the underlay; no tracking for the rest
	ChainOutput   = "OV-OVERLAY-OUT"   // filter OUTPUT: no VXLAN of an encrypted network leaves but through the tunnel
)

// vniMatch is the u32 match that selects VXLAN packets carrying vni: from the start of the IP header,
// skip IHL*4 bytes (0>>22&0x3C@) to the UDP header, then 8 (UDP) + 4 (flags, reserved) bytes to the
// 24-bit VNI, the top three bytes of that word (>>8). Written as iptables-save prints it.
func vniMatch(vni uint32) []string {
	return []string{"-m", "u32", "--u32", fmt.Sprintf("0x0>>0x16&0x3c@0xc>>0x8=0x%x", vni)}
}

// wantedTables computes ov's part of each table for the networks set up on this host: the chains, their
// rules and the jumps into them.
//
// The VXLAN ingress filter: the kernel's VXLAN socket takes any UDP datagram to Port on any local
// address and decapsulates it into the device of the VNI in its header, whoever sent it. So:
//   - raw PREROUTING (OV-OVERLAY-GUARD) drops every UDP datagram to Port that did not arrive on the
//     underlay interface: nothing from a container (bridges, gateways, veths) or from lo is taken in
//     or forwarded, before connection tracking and before any rule in the filter table;
//   - filter INPUT (OV-OVERLAY-IN) accepts a datagram to Port only when it arrives on the underlay
//     interface, to LocalIP, from a VTEP that serves the VNI it carries (see ingressRules), and drops
//     every other one delivered to this host.
//
// devVNIs are the VNIs of the VXLAN devices on Port the host namespace has now (ov's and any other's).
func wantedTables(nets []NetworkState, local netip.Addr, underlay string, devVNIs []uint32, port int, isolateFrom []string, noTrack bool) []iptables.Table {
	p := strconv.Itoa(port)
	var in, fwd, nat, raw [][]string // rules as argument lists, in `iptables -S` form

	// Only VXLAN enters the chains of the ingress filter and OV-OVERLAY-RAW: their jumps match UDP to
	// Port, so every other packet pays one test per hook, and a tunnel packet is not tested for the
	// port again on the rules it passes (the NOTRACK and accept rules). The DROP rules keep the port
	// test, so each chain drops nothing but VXLAN whatever jumps into it; a tunnel packet fails them on
	// their first test (the interface) or never reaches them.
	vx := []string{"-p", "udp", "-m", "udp", "--dport", p}
	in = append(ingressRules(nets, local, underlay, devVNIs), slices.Concat(vx, []string{"-j", "DROP"}))
	guard := [][]string{slices.Concat([]string{"!", "-i", underlay}, vx, []string{"-j", "DROP"})}

	// Traffic between the containers of a network never reaches netfilter (the macvlans of a VXLAN
	// device switch it among themselves, the device tunnels it): these rules see only what is routed
	// through a gateway interface ovgw-<vni>, into or out of a network.
	// Published ports (-p) go before the isolation rules, each rule matching only DNATed connections.
	dnat, pubFwd, pubNAT := publishRules(publishedPorts(nets), isolateFrom)
	fwd = append(fwd, []string{"-o", "ovgw+", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"})
	fwd = append(fwd, pubFwd...)
	fwd = append(fwd, []string{"-i", "ovgw+", "-o", "ovgw+", "-j", "DROP"}) // isolation between overlay networks
	nat = append(nat, pubNAT...)
	nat = append(nat, localnetRules(nets)...)
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

	from := func(chains ...string) []iptables.Jump {
		var js []iptables.Jump
		for _, c := range chains {
			js = append(js, iptables.Jump{From: c})
		}
		return js
	}
	toLocal := func(chains ...string) []iptables.Jump {
		var js []iptables.Jump
		for _, c := range chains {
			js = append(js, iptables.Jump{From: c, Match: []string{"-m", "addrtype", "--dst-type", "LOCAL"}})
		}
		return js
	}
	fromVXLAN := func(chain string) []iptables.Jump { return []iptables.Jump{{From: chain, Match: vx}} }
	// Connection tracking buys nothing for the tunnel packets (stateless rules): skipping it shortens
	// every packet's path. Traffic routed through a gateway stays tracked (RELATED,ESTABLISHED,
	// MASQUERADE).
	// The guard chain, on the path of every tunnel packet received, does the NOTRACK of PREROUTING too:
	// one jump and two rules per packet rather than two jumps.
	raw = append(raw, []string{"-j", "NOTRACK"})
	if noTrack {
		guard = append(guard, raw...)
	}
	return []iptables.Table{
		{Name: "filter", Chains: []iptables.Chain{
			{Name: ChainInput, Jumps: fromVXLAN("INPUT"), Rules: toRules(in)},
			{Name: ChainForward, Jumps: from("FORWARD"), Rules: toRules(fwd)},
		}},
		{Name: "nat", Chains: []iptables.Chain{
			{Name: ChainNAT, Jumps: from("POSTROUTING"), Rules: toRules(nat)},
			{Name: ChainDNAT, Jumps: toLocal(dnatJumps...), Rules: toRules(dnat), Absent: len(dnat) == 0},
		}},
		{Name: "raw", Chains: []iptables.Chain{
			{Name: ChainRawGuard, Jumps: fromVXLAN("PREROUTING"), Rules: toRules(guard)},
			{Name: ChainRaw, Jumps: fromVXLAN("OUTPUT"), Rules: toRules(raw), Absent: !noTrack},
		}},
	}
}

// ingressRules returns the accept rules of OV-OVERLAY-IN: for each other VTEP, one rule per network it
// serves, matching the VNI with u32. The kernel decapsulates a packet only into a VXLAN device of its
// VNI, so a VTEP that serves every VNI the host has a device for (and will have, once nets are set
// up) gets one rule without the VNI test: the same packets pass, and the tunnel's packets skip the u32
// match (an iptables-nft compat match, the costliest test on their path).
func ingressRules(nets []NetworkState, local netip.Addr, underlay string, devVNIs []uint32) [][]string {
	all := map[uint32]bool{}
	for _, v := range devVNIs {
		all[v] = true
	}
	served := map[netip.Addr][]uint32{}
	var vteps []netip.Addr
	for _, ns := range nets {
		all[ns.Network.VNI] = true
		if ns.Network.Encrypted { // through the tunnel only: tunnelInput
			continue
		}
		for _, v := range remoteVTEPs(ns, local) {
			if served[v] == nil {
				vteps = append(vteps, v)
			}
			served[v] = append(served[v], ns.Network.VNI)
		}
	}
	slices.SortFunc(vteps, netip.Addr.Compare)
	var out [][]string
	for _, v := range vteps {
		head := []string{"-s", v.String() + "/32", "-d", local.String() + "/32", "-i", underlay} // UDP to Port: the jump tested it
		if len(served[v]) == len(all) {
			out = append(out, append(head, "-j", "ACCEPT"))
			continue
		}
		for _, vni := range served[v] {
			out = append(out, slices.Concat(head, vniMatch(vni), []string{"-j", "ACCEPT"}))
		}
	}
	return out
}

func toRules(specs [][]string) []iptables.Rule {
	out := make([]iptables.Rule, len(specs))
	for i, r := range specs {
		out[i] = iptables.Rule(strings.Join(r, " "))
	}
	return out
}

// syncTables makes ov's part of each table what ts says (iptables.Sync: one iptables-save per table,
// and one atomic iptables-restore per table that differs); with remove, it deletes every chain of ts
// and the jumps to them instead. It returns the number of rules and chains it added or deleted.
func syncTables(c iptables.Client, ts []iptables.Table, remove bool) (changes int, err error) {
	for _, t := range ts {
		if remove {
			t.Chains = slices.Clone(t.Chains)
			for i := range t.Chains {
				t.Chains[i].Absent = true
			}
		}
		n, err := iptables.Sync(c, t)
		changes += n
		if err != nil {
			return changes, err
		}
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

// tunnelEnds names this host's end of the tunnel of the encrypted networks.
type tunnelEnds struct {
	name string     // interface, e.g. ovwg0
	addr netip.Addr // this host's tunnel address
}

// withTunnel adds the rules of the encrypted networks to the tables wantedTables computed:
//   - filter OV-OVERLAY-IN starts with one DROP per encrypted VNI for VXLAN that did not arrive
//     through the tunnel interface (cleartext VXLAN for an encrypted network, from anyone), and
//     accepts, just before its final DROP, that VNI from the tunnel addresses of the hosts serving it;
//   - filter OV-OVERLAY-OUT (jumped from OUTPUT, first) drops VXLAN of an encrypted VNI about to
//     leave by any interface but the tunnel: were the tunnel's routes gone, nothing leaves in clear;
//   - raw OV-OVERLAY-GUARD lets VXLAN in from the tunnel interface (its packets were authenticated
//     by WireGuard), which it would drop as not coming from the underlay.
//
// Without encrypted networks it only marks OV-OVERLAY-OUT absent.
func withTunnel(specs []iptables.Table, nets []NetworkState, tun tunnelEnds, port int, noTrack bool) []iptables.Table {
	var enc []NetworkState
	for _, ns := range nets {
		if ns.Network.Encrypted {
			enc = append(enc, ns)
		}
	}
	vx := []string{"-p", "udp", "-m", "udp", "--dport", strconv.Itoa(port)}
	out := iptables.Chain{Name: ChainOutput, Jumps: []iptables.Jump{{From: "OUTPUT", Match: vx}}, Absent: len(enc) == 0}
	var drops, accepts, outDrops [][]string
	for _, ns := range enc {
		vni := vniMatch(ns.Network.VNI)
		drops = append(drops, slices.Concat([]string{"!", "-i", tun.name}, vni, []string{"-j", "DROP"}))
		outDrops = append(outDrops, slices.Concat([]string{"!", "-o", tun.name}, vni, []string{"-j", "DROP"}))
		for _, v := range remoteVTEPs(ns, tun.addr) {
			accepts = append(accepts, slices.Concat([]string{"-s", v.String() + "/32", "-d", tun.addr.String() + "/32", "-i", tun.name}, vni, []string{"-j", "ACCEPT"}))
		}
	}
	out.Rules = toRules(outDrops)
	specs = slices.Clone(specs)
	for ti := range specs {
		t := &specs[ti]
		t.Chains = slices.Clone(t.Chains)
		for ci := range t.Chains {
			c := &t.Chains[ci]
			switch {
			case len(enc) == 0:
			case t.Name == "filter" && c.Name == ChainInput:
				last := len(c.Rules) - 1 // the final DROP
				c.Rules = slices.Concat(toRules(drops), c.Rules[:last], toRules(accepts), c.Rules[last:])
			case t.Name == "raw" && c.Name == ChainRawGuard:
				var pass [][]string
				if noTrack {
					pass = append(pass, []string{"-i", tun.name, "-j", "NOTRACK"})
				}
				pass = append(pass, []string{"-i", tun.name, "-j", "ACCEPT"})
				c.Rules = slices.Concat(toRules(pass), c.Rules)
			}
		}
		if t.Name == "filter" {
			t.Chains = append(t.Chains, out)
		}
	}
	return specs
}
