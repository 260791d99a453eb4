// Package controller is the cluster API of ov: overlay networks, hosts and the addresses of their
// endpoints, served over HTTP/JSON (docs/api.md) and kept in etcd through internal/store.
//
// A Controller is stateless: every decision that must be unique (a network name, a subnet, a VNI, an
// address) is an etcd transaction that fails when another controller or request won. The controller keeps
// a cache of the whole /ov/v1/ tree (list, then watch) only as a hint: it picks candidate addresses from
// it and checks tokens against it; a stale cache costs a retry, never a duplicate. Run as many controllers
// against one etcd as availability needs.
//
// Access: the admin token may do everything; the join token may only register a new host, which answers
// with the host's own token; a host token may read networks, hosts and endpoints and allocate, release
// and reconcile only for its own host.
package controller
