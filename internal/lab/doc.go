// Package lab builds ov's multi-host lab on one machine: an underlay network namespace holding a
// bridge (the "switch") and the controller, and N host namespaces, each wired to the bridge by a veth
// and running a real ovagent. The README's demo, the end-to-end tests (test/e2e) and the overlay
// benchmarks all use it; cmd/ovlab is its command line. The controller runs its embedded etcd, or
// (Config.EtcdMembers) uses a cluster of etcd processes in the underlay namespace. The lab injects
// faults: it kills and starts its processes (controller, agents, etcd members) and partitions and heals
// hosts.
//
// Invariants:
//   - Everything the lab makes is named with Config.Prefix and recorded in Dir/lab.json before it is
//     made, so Down removes it even after a crash of the process that called Up.
//   - Traffic stays inside the lab's namespaces: the underlay subnet and the "outside" address
//     (Config.External, on the loopback of the underlay namespace) exist only there.
//   - Every long-lived process is a Proc: its command line is fixed when first started and reused at
//     every start, so a restarted process has the same flags, data, tokens and ports.
//   - Faults stay inside the lab: partition rules are made in the host's own network namespace, never
//     in the machine's tables.
//   - Down leaves no namespace, link, mount, cgroup, iptables rule or process of the lab behind.
package lab
