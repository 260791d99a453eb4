// Package vxlan is ov's overlay data plane on one host: it converges the host's kernel to the desired
// overlay state, level-triggered. Given the whole State (every overlay network the host serves, its
// local endpoints, its remote peers and the VTEPs of the other hosts serving it), Driver.Reconcile
// computes the VXLAN devices, gateway and container macvlans, neighbour and FDB entries and iptables
// rules the host should have, compares them with what the kernel has and fixes the difference.
//
// What it owns on a host (and removes when the State no longer asks for it):
//   - links named ovvx-<vni> (VXLAN) and ovgw-<vni> (the host's gateway: a bridge-mode macvlan on
//     ovvx-<vni> holding the gateway address), in the host network namespace given by Config.HostNetns;
//   - each local container's interface: a bridge-mode macvlan on ovvx-<vni>, created inside
//     Endpoint.NetNSPath and named Endpoint.IfName (deleted when the container leaves the network, or
//     with ovvx-<vni>, or with the container's namespace);
//   - the links of the previous design, ovbr-<vni> (bridge) and ovep<hash> (veth), deleted on sight;
//   - the self FDB entries with a dst and the ARP entries on every ovvx-<vni>: exactly one entry
//     per remote endpoint plus one all-zero FDB entry per other VTEP serving the network;
//   - the iptables chains OV-OVERLAY-IN and OV-OVERLAY-FWD (filter), OV-OVERLAY-NAT (nat),
//     OV-OVERLAY-GUARD and OV-OVERLAY-RAW (raw) and the single jump rule to each from INPUT, FORWARD,
//     POSTROUTING and raw PREROUTING and OUTPUT; while a local endpoint publishes ports
//     (Endpoint.Ports), OV-OVERLAY-DNAT (nat) with a jump from PREROUTING and OUTPUT for local
//     destinations, and route_localnet on the gateways of the networks with a port 127.0.0.1 reaches
//     (publish.go: only DNATed connections enter a network, never from another overlay network).
//
// Invariants: Reconcile is idempotent (running it twice changes nothing), removes everything of the
// above that the State does not list, and leaves every other link, entry, rule and chain alone.
// A network is set up on a host only while that host has at least one local endpoint on it.
// A bad entry of the State (an address claimed twice, outside its subnet, an invalid VTEP; a network
// with a bad VNI or subnet) is left out, logged once and reported by Driver.Status, and everything
// else is programmed: see State.Sanitize for the rules, which do not depend on the order of the lists.
//
// The VXLAN ingress filter: UDP to Config.Port is taken in only when it arrives on the underlay
// interface (the one holding LocalIP), to LocalIP, from a VTEP the State lists for the network whose
// VNI the packet carries; everything else to that port is dropped, and nothing to it from another
// interface is taken in or forwarded. It fails closed: a reconcile whose iptables rules cannot be
// installed creates no VXLAN device, gateway or container interface, and returns an error naming
// what the filter needs.
package vxlan
