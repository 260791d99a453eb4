package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ovnet/ov/internal/errdefs"
)

// A host is alive while its key /ov/v1/alive/<host> exists. The key is attached to an etcd lease that
// a controller keeps alive on the host's behalf while the host's heartbeats arrive (KeepAlive), with a
// TTL of the controller's dead-after: when heartbeats stop, etcd deletes the key by itself. The key
// holds the time (RFC 3339) its controller last wrote it. Liveness thus never writes the host record,
// whose revision every allocation for the host compares: heartbeats do not make allocations retry.

// GrantAlive grants a lease of ttl (rounded up to whole seconds, at least 1s) and writes host's alive
// key with seen, attached to it. It returns the lease. A host that is not registered is ErrNotFound
// (and the lease is revoked).
func (s *Store) GrantAlive(ctx context.Context, host string, ttl time.Duration, seen time.Time) (int64, error) {
	ctx2, cancel := s.timeout(ctx)
	defer cancel()
	secs := int64((ttl + time.Second - 1) / time.Second)
	l, err := s.cli.Grant(ctx2, max(secs, 1))
	if err != nil {
		return 0, s.wrap(fmt.Sprintf("grant the liveness lease of host %q", host), err)
	}
	if err := s.PutAlive(ctx, host, int64(l.ID), seen); err != nil {
		rctx, rcancel := s.timeout(context.WithoutCancel(ctx))
		_, _ = s.cli.Revoke(rctx, l.ID)
		rcancel()
		return 0, err
	}
	return int64(l.ID), nil
}

// PutAlive writes host's alive key with seen, attached to lease, provided the host is registered
// (ErrNotFound otherwise); a lease that expired is ErrNotFound too.
func (s *Store) PutAlive(ctx context.Context, host string, lease int64, seen time.Time) error {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	tr, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(hostKey(host)), ">", 0),
	).Then(clientv3.OpPut(aliveKey(host), seen.UTC().Format(time.RFC3339Nano), clientv3.WithLease(clientv3.LeaseID(lease)))).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("the liveness lease of host %q expired: %w", host, errdefs.ErrNotFound)
	}
	if err != nil {
		return s.wrap(fmt.Sprintf("record that host %q is alive", host), err)
	}
	if !tr.Succeeded {
		return notFoundHost(host)
	}
	return nil
}

// KeepAlive renews lease once (etcd's LeaseKeepAliveOnce: no write to the key space). A lease that
// expired or was revoked is ErrNotFound: grant a new one.
func (s *Store) KeepAlive(ctx context.Context, lease int64) error {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	_, err := s.cli.KeepAliveOnce(ctx, clientv3.LeaseID(lease))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("liveness lease %x expired: %w", lease, errdefs.ErrNotFound)
	}
	if err != nil {
		return s.wrap("renew a liveness lease", err)
	}
	return nil
}

// ListAlive returns the hosts that are alive and when each was last seen.
func (s *Store) ListAlive(ctx context.Context) (map[string]time.Time, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, alivePfx, clientv3.WithPrefix())
	if err != nil {
		return nil, s.wrap("list the hosts that are alive", err)
	}
	out := make(map[string]time.Time, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		t, _ := time.Parse(time.RFC3339Nano, string(kv.Value))
		out[strings.TrimPrefix(string(kv.Key), alivePfx)] = t
	}
	return out, nil
}

// GetAlive tells whether host is alive and when it was last seen.
func (s *Store) GetAlive(ctx context.Context, host string) (time.Time, bool, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, aliveKey(host))
	if err != nil {
		return time.Time{}, false, s.wrap(fmt.Sprintf("tell whether host %q is alive", host), err)
	}
	if len(resp.Kvs) == 0 {
		return time.Time{}, false, nil
	}
	t, _ := time.Parse(time.RFC3339Nano, string(resp.Kvs[0].Value))
	return t, true, nil
}
