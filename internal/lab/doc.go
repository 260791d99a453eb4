// Package lab builds ov's multi-host lab on one machine: an underlay network namespace holding a
// bridge (the "switch") and the controller, and N host namespaces, each wired to the bridge by a veth
// and running a real ovagent. The README's demo, the end-to-end tests (test/e2e) and the overlay
// benchmarks all use it; cmd/ovlab is its command line.
//
// Invariants:
//   - Everything the lab makes is named with Config.Prefix and recorded in Dir/lab.json before it is
//     made, so Down removes it even after a crash of the process that called Up.
//   - Traffic stays inside the lab's namespaces: the underlay subnet and the "outside" address
//     (Config.External, on the loopback of the underlay namespace) exist only there.
//   - Down leaves no namespace, link, mount, cgroup, iptables rule or process of the lab behind.
package lab
