// Package e2e holds ov's end-to-end tests: a lab of three hosts made of network namespaces on a shared
// underlay bridge, each running a real ovagent, and a real ovcontroller with an embedded etcd
// (internal/lab). Containers on different hosts talk over the VXLAN overlay; the tests check what a
// user relies on: reachability and isolation, unique addresses, MTU, the kernel state, failure
// behaviour (host, controller and agent loss), the gateway, and that teardown leaves nothing.
//
// The tests need root; they skip loudly without it. CI runs them as root.
package e2e
