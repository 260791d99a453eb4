// Package bridge is ov's local network drivers: bridge (a Linux bridge per network, a veth per container,
// outbound MASQUERADE, published ports by DNAT, isolation between bridge networks), host (no namespace),
// none (a namespace with only lo) and container:<name> (another container's namespace).
//
// The Driver owns:
//   - the bridge networks of this host (default "bridge" on ov0 and user-defined ones) and their state file;
//   - container network namespaces, bind-mounted under Config.NetnsDir/<container> so that they outlive
//     processes; the runtime joins a namespace by that path;
//   - the iptables chains OV-FORWARD, OV-ISOLATION-1, OV-ISOLATION-2 (filter), OV-DNAT,
//     OV-NAT-POSTROUTING (nat) and OV-LOOPBACK (raw), plus one jump to them from FORWARD, PREROUTING,
//     OUTPUT and POSTROUTING;
//   - the host's loopback guard: OV-LOOPBACK drops IPv4 to 127.0.0.0/8 that does not arrive on lo, on
//     every host the agent runs on, whatever networks exist (it protects overlay containers' hosts too).
//
// Invariants:
//   - every operation works in the network namespace of the calling process ("the host"); nothing else is
//     touched, so the driver runs unchanged inside a namespace that plays a host;
//   - iptables is level-triggered: after any change the driver computes the full rule set of all its
//     networks and endpoints and makes its chains hold exactly that (iptables.Sync); built-in chains
//     get only the jumps, inserted at the top once;
//   - every container address comes from the host-local allocator (ipam.Local), is released when the
//     endpoint goes and is not reused at once (next-fit);
//   - Attach and Detach are Ensure-style: attaching again yields the same interface, address and rules;
//     detaching what is not there is not an error; a crash between steps is repaired by the next call or
//     by Reconcile;
//   - bridge network subnets overlap neither each other nor a route of the host;
//   - a host port (with its protocol and host address) is published by at most one container;
//   - no container namespace (CreateNetns) or interface (Attach) is made while the loopback guard is
//     not known to be in place;
//   - route_localnet is on on a bridge exactly while a container of its network publishes a port that
//     127.0.0.1 reaches (on a loopback address or on every address).
//
// Files: config.go (Config), portspec.go (-p parsing), mode.go (--network parsing), rules.go (the
// iptables rule set, pure), state.go (the state file), driver.go (the Driver, Reconcile, Teardown),
// network.go (networks), endpoint.go (attach, detach, prune), netns.go (container namespaces),
// host.go (bridges, namespaces, conntrack and sysctls through internal/netlink), veth.go (a
// container's veth pair). The Driver implements driver.NetworkDriver,
// driver.Pruner and driver.NetnsManager and speaks the API's types at that edge.
package bridge
