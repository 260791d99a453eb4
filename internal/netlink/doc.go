// Package netlink is ov's narrow seam over rtnetlink: the handful of link, address, route and
// neighbour calls the project makes, declared as the Handle interface (satisfied by
// *github.com/vishvananda/netlink.Handle), and Namespaces, which opens a Handle inside a network
// namespace named by its path, or creates and removes one (a bind-mounted namespace that outlives
// processes). Routes, LinkNames and FindLink are the lookups built on a Handle that several drivers
// share, and Do runs a function inside a namespace.
//
// System is the real implementation. Fake is an in-memory one for unit tests: it keeps links,
// addresses, routes, neighbour and FDB entries per namespace, mimics the kernel behaviour ov relies on
// (EEXIST on duplicate names, veth pairs dying together, FDB append/replace, connection-tracking
// entries deleted by filter), and renders each namespace as sorted text so tests compare whole states
// with cmp.Diff.
//
// Invariants: a Handle works in exactly one namespace for its whole life; callers Close it.
package netlink
