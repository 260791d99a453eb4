// Package membership tells an agent which other hosts are alive and at which underlay (VTEP) address,
// through hashicorp/memberlist gossip among the agents.
//
// Invariants:
//   - etcd (through the controller) stays the source of truth for what exists; membership only says who
//     is alive. A host that is not a member yet, or is dead or has left, is reported with Alive false.
//   - Gossip never runs in clear: every message is encrypted and authenticated with the cluster's
//     keyring (AES-GCM; the controller hands it to registered hosts), one that does not decrypt is
//     dropped, and without a keyring gossip does not start (Run waits for SetKeyring). A rotation
//     installs the new key at once and sends with it only after Config.KeyGrace.
//   - Only registered hosts are members (SetHosts: name and gossip address): alive messages about any
//     other node are refused, so they never enter the table, and a host removed from the list leaves it.
//   - A claim that a host is dead is believed only when the host does not answer a direct probe from
//     this host either (two authenticated probes, Config.VerifyTimeout, answered to the asker's
//     registered address only: probe.go): a member holding the key cannot blackhole a live host.
//     While the claim stands the host is probed every ProbeInterval, so a later real death is seen.
//   - A host whose agent is silent (dead by gossip, no answer to the direct probe) keeps its entries
//     while its kernel answers a data plane probe (Config.Dataplane, ICMP echo to its underlay
//     address: liveness.go); it is withdrawn once the kernel has been silent for Config.DataplaneGrace.
//     Member.Agent tells the agent's state, Member.Alive what the data plane follows.
//   - Callbacks from memberlist never block: they record the change and signal Changes(). memberlist is
//     never called with the Membership's lock held (its callbacks hold its own lock).
//   - Shutting down does not Leave the cluster: an agent restart must not make the other hosts withdraw
//     the forwarding entries of containers that keep running. A host that stays away is declared dead
//     by the failure detector within a few seconds (see docs/cluster.md).
package membership
