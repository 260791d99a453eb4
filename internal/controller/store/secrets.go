package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ovnet/ov/internal/errdefs"
)

// Secret is the value of a controller secret (/ov/v1/secrets/<name>) and its ModRevision. The store
// does not interpret the value; the controller does.
type Secret struct {
	Value    []byte
	Revision int64
}

// GetSecret reads a secret; a missing one is ErrNotFound.
func (s *Store) GetSecret(ctx context.Context, name string) (Secret, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, secretKey(name))
	if err != nil {
		return Secret{}, s.wrap(fmt.Sprintf("read secret %q", name), err)
	}
	if len(resp.Kvs) == 0 {
		return Secret{}, fmt.Errorf("secret %q does not exist yet: %w", name, errdefs.ErrNotFound)
	}
	return Secret{Value: resp.Kvs[0].Value, Revision: resp.Kvs[0].ModRevision}, nil
}

// CreateSecret writes value as secret name unless it exists (one conditional write: of several
// controllers racing, one wins). It returns the secret as it now is, and whether this call created it.
func (s *Store) CreateSecret(ctx context.Context, name string, value []byte) (Secret, bool, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	k := secretKey(name)
	tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(value))).Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return Secret{}, false, s.wrap(fmt.Sprintf("create secret %q", name), err)
	}
	if tr.Succeeded {
		return Secret{Value: value, Revision: tr.Header.Revision}, true, nil
	}
	kvs := tr.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 { // deleted in between: cannot happen in one transaction, but say so
		return Secret{}, false, fmt.Errorf("create secret %q: it vanished; retry: %w", name, errdefs.ErrConflict)
	}
	return Secret{Value: kvs[0].Value, Revision: kvs[0].ModRevision}, false, nil
}

// UpdateSecret replaces secret name if it is still at revision rev (compare-and-swap); otherwise it is
// ErrConflict (read it again and retry).
func (s *Store) UpdateSecret(ctx context.Context, name string, value []byte, rev int64) (Secret, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	k := secretKey(name)
	tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpPut(k, string(value))).Commit()
	if err != nil {
		return Secret{}, s.wrap(fmt.Sprintf("update secret %q", name), err)
	}
	if !tr.Succeeded {
		return Secret{}, fmt.Errorf("secret %q changed meanwhile; retry: %w", name, errdefs.ErrConflict)
	}
	return Secret{Value: value, Revision: tr.Header.Revision}, nil
}
