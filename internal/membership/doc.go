// Package membership tells an agent which other hosts are alive and at which underlay (VTEP) address,
// through hashicorp/memberlist gossip among the agents.
//
// Invariants:
//   - etcd (through the controller) stays the source of truth for what exists; membership only says who
//     is alive. A host that is not a member yet, or is dead or has left, is reported with Alive false.
//   - Callbacks from memberlist never block: they record the change and signal Changes().
//   - Shutting down does not Leave the cluster: an agent restart must not make the other hosts withdraw
//     the forwarding entries of containers that keep running. A host that stays away is declared dead
//     by the failure detector within Config.DeadAfter-ish seconds (see docs/overlay.md).
package membership
