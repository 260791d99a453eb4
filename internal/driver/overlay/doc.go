// Package overlay is the agent's overlay network driver: it joins the host to the cluster and connects
// containers to overlay networks across hosts.
//
// It ties three sources of truth to the VXLAN data plane (package vxlan):
//   - the controller (through its API): which overlay networks exist, which address each container on
//     them has (allocated cluster-wide), and on which host each endpoint lives (a watch per network);
//   - membership (memberlist gossip): which hosts are alive now;
//   - this host's own endpoints (the containers the agent attached), kept in a state file.
//
// From these it computes the whole desired overlay state of the host and hands it to the data plane,
// which converges the kernel (level-triggered). Invariants:
//   - The state file holds everything needed to rebuild the data plane without the controller: the
//     networks, the local endpoints and the last known remote endpoints with their watch revision. An
//     agent restarted while the controller is down programs exactly what it had, so traffic keeps flowing.
//   - A remote endpoint is programmed unless gossip has seen its host, at the host's registered
//     address, and says it is dead (membership believes a dead claim only when a direct probe fails
//     too); a host gossip has not seen yet (just after a start) counts as alive, so a restart withdraws
//     nothing.
//   - Gossip runs only with the cluster's keyring, which the controller gives registered hosts; the
//     driver keeps it, with the host list, in the state file (0600), so a restart gossips at once even
//     with the controller down, and refetches it when the heartbeat answer shows a new version.
//   - Attach allocates first and programs second; a failure after the allocation releases it. Detach
//     unprograms first and releases second; a release that fails (controller down) is made good by the
//     reconcile report at the next registration, which releases whatever the host does not really have.
//   - The local endpoints are the agent's containers: at start-up the agent prunes those of containers
//     it has no record of (a crash between attach and record), before the registration reports them.
//
// Files: driver.go (Config, the Driver, Run), join.go (registration, heartbeat, host list), gossip.go
// (the gossip keyring and members from the controller and the state file), watch.go
// (the controller's network list and endpoint watches, applied to the state), watchmux.go (the host
// watch: one endpoint watch stream for every network the host serves), network.go (network
// operations), attach.go (attach and detach), prune.go (endpoints of containers the agent does not
// know, at start-up), desired.go (the desired data plane state), dataplane.go (this host's data plane
// for network inspect: what is programmed, what is left out and why), reachability.go (the hosts this
// host finds unreachable, reported to the controller for `ovctl node ls`), state.go (the state file),
// ifname.go (interface names and route checks), publish.go (published ports: -p, checked against
// the host's other overlay endpoints, kept in the state file, handed to the data plane).
package overlay
