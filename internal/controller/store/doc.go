// Package store is ov's cluster state in etcd: the versioned key schema (keys.go), the conditional
// transactions that allocate networks, VNIs, hosts and addresses, list-then-watch with re-list on
// compaction, and an embedded single-member etcd for controllers given no external etcd.
//
// Invariants:
//   - every write is conditional: a create compares CreateRevision(key) == 0, an update or delete
//     compares ModRevision(key) == the revision the caller read; a lost race is retried or reported as
//     errdefs.ErrConflict / ErrAlreadyExists, never silently overwritten;
//   - an address is held by exactly one key (/ov/v1/endpoints/<network>/<ip>) and its owner by one key
//     (/ov/v1/owners/<network>/<host>/<container>); both are created and deleted in the same transaction,
//     guarded by the network's CreateRevision and the host record's ModRevision, so no address outlives
//     its network or host registration, no endpoint carries a stale VTEP, and no two owners share one;
//   - nothing outside this package knows a key.
//
// Errors: etcd that cannot be reached (or has no leader) is errdefs.ErrUnavailable.
package store
