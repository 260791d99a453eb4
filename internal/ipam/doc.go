// Package ipam allocates IPv4 addresses, subnets and VXLAN network identifiers (VNIs).
//
// The pure logic (Range, PickSubnet, NextVNI, Overlaps) decides which address, subnet or VNI comes next
// and never does I/O: the store that holds the allocations passes a "taken" predicate. Two stores use it:
// Local (this package), a host-local JSON file for bridge networks, and the controller's etcd store
// (internal/store) for overlay networks.
//
// Invariants:
//   - the network address, the broadcast address and the gateway of a subnet are never handed out;
//   - allocation is next-fit: each network remembers the last address it handed out (its cursor) and the
//     search for a free address starts after it and wraps around, so an address that was just released
//     is handed out again only after every other free address of the range has been used;
//   - an owner (a container) holds at most one address per network: asking twice returns the same one.
package ipam
