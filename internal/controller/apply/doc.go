// Package apply makes a cluster match a declarative cluster file (`ovctl apply -f cluster.yaml`).
//
// It owns the file format (see docs/cluster-yaml.md), its validation, the plan (the list of changes that
// turns the cluster's current state into the declared one) and the execution of that plan through the
// controller API. The flow is Parse → Current → NewPlan → Plan.Apply; Run chains them for ovctl.
//
// Invariants:
//   - A file with any error changes nothing: the whole file is parsed, validated and planned against the
//     current cluster state before the first change, and every problem is reported with file:line.
//   - Applying the same file twice changes nothing the second time (the plan has only "=" and "!" lines).
//   - Apply creates and updates networks and sets the labels of registered hosts; it deletes only with
//     Prune, and then only networks that carry the label ov.apply/managed=true (which apply puts on every
//     network it creates or adopts) and that the file no longer names. Hosts belong to their agents:
//     apply never registers or deletes one (a registration creates the host's own credential, which only
//     its agent may hold), and only adds or overwrites host labels.
//   - Fields that define a network's data plane (driver, subnet, gateway, ip range, VNI, MTU) are never
//     changed in place: the plan refuses such a change and says how to re-create the network. Labels and
//     internal are changed in place, with a compare-and-swap on the network's revision.
//   - Every write goes through the controller, which is the authority on conflicts: a write that loses a
//     race (the network was created, changed or deleted by someone else since the plan) stops the apply
//     with an error that says what was done and what to run next.
//
// The package is pure logic over the small Cluster interface; *client.Client (controller/client)
// satisfies it.
package apply
