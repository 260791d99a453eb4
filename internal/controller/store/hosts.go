package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// Host is a host as stored.
type Host struct {
	api.Host
	// TokenHash is the hex SHA-256 of the host's own token (the token itself is never stored); empty
	// after ovctl node reset-token: no host token works then.
	TokenHash string `json:"tokenHash,omitempty"`
	// Rejoin is set by ovctl node reset-token: the host may register again with the join token (once),
	// keeping its record and its allocations, and gets a new host token.
	Rejoin bool `json:"rejoin,omitempty"`
	// ConfigLabels are the labels the host's agent registers (its configuration); api.Host.Labels as
	// stored are the labels set by an admin (ovctl apply). The host's labels are ConfigLabels overlaid
	// by those (EffectiveLabels).
	ConfigLabels map[string]string `json:"configLabels,omitempty"`
	// CreateRevision identifies this registration. (Allocations compare the host's ModRevision,
	// Revision, which changes with every re-registration, label change and token reset, but not with
	// heartbeats: liveness is a lease, see alive.go.)
	CreateRevision int64 `json:"-"`
}

// EffectiveLabels are the host's labels: its agent's ConfigLabels overlaid by the labels an admin set
// (an admin's value wins for a key both name).
func (h Host) EffectiveLabels() map[string]string {
	if len(h.ConfigLabels) == 0 && len(h.Labels) == 0 {
		return nil
	}
	out := make(map[string]string, len(h.ConfigLabels)+len(h.Labels))
	maps.Copy(out, h.ConfigLabels)
	maps.Copy(out, h.Labels)
	return out
}

func encodeHost(h Host) string {
	h.Revision, h.State, h.Token = 0, "", ""
	b, _ := json.Marshal(h)
	return string(b)
}

func decodeHost(kv *mvccpb.KeyValue) (Host, error) {
	var h Host
	if err := json.Unmarshal(kv.Value, &h); err != nil {
		return Host{}, fmt.Errorf("store: corrupt host record: %v", err)
	}
	h.Revision, h.CreateRevision = kv.ModRevision, kv.CreateRevision
	return h, nil
}

func notFoundHost(name string) error {
	return fmt.Errorf("host %q is not registered; see ovctl node ls: %w", name, errdefs.ErrNotFound)
}

// CreateHost registers a new host; a host of that name is ErrAlreadyExists.
func (s *Store) CreateHost(ctx context.Context, h Host) (Host, error) {
	ctx2, cancel := s.timeout(ctx)
	defer cancel()
	tr, err := s.cli.Txn(ctx2).If(
		clientv3.Compare(clientv3.CreateRevision(hostKey(h.Name)), "=", 0),
	).Then(clientv3.OpPut(hostKey(h.Name), encodeHost(h))).Commit()
	if err != nil {
		return Host{}, s.wrap(fmt.Sprintf("register host %q", h.Name), err)
	}
	if !tr.Succeeded {
		return Host{}, fmt.Errorf("host %q is already registered: %w", h.Name, errdefs.ErrAlreadyExists)
	}
	h.Revision, h.CreateRevision = tr.Header.Revision, tr.Header.Revision
	return h, nil
}

// UpdateHost writes h over the host record at revision h.Revision (compare-and-swap): a record changed
// since is ErrConflict, a removed one ErrNotFound.
func (s *Store) UpdateHost(ctx context.Context, h Host) (Host, error) {
	ctx2, cancel := s.timeout(ctx)
	defer cancel()
	tr, err := s.cli.Txn(ctx2).If(
		clientv3.Compare(clientv3.ModRevision(hostKey(h.Name)), "=", h.Revision),
	).Then(clientv3.OpPut(hostKey(h.Name), encodeHost(h))).Else(clientv3.OpGet(hostKey(h.Name), clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return Host{}, s.wrap(fmt.Sprintf("update host %q", h.Name), err)
	}
	if !tr.Succeeded {
		if len(tr.Responses[0].GetResponseRange().Kvs) == 0 {
			return Host{}, notFoundHost(h.Name)
		}
		return Host{}, fmt.Errorf("host %q changed meanwhile; retry: %w", h.Name, errdefs.ErrConflict)
	}
	h.Revision = tr.Header.Revision
	return h, nil
}

// GetHost reads one host.
func (s *Store) GetHost(ctx context.Context, name string) (Host, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, hostKey(name))
	if err != nil {
		return Host{}, s.wrap(fmt.Sprintf("get host %q", name), err)
	}
	if len(resp.Kvs) == 0 {
		return Host{}, notFoundHost(name)
	}
	return decodeHost(resp.Kvs[0])
}

// ListHosts reads every host, sorted by name.
func (s *Store) ListHosts(ctx context.Context) ([]Host, error) {
	return list(ctx, s, "list hosts", hostsPfx, decodeHost, func(h Host) string { return h.Name })
}

// DeleteHost removes a host and releases every address it held, in every network. The host record
// goes first, so that no allocation for it can succeed afterwards; then its allocations are released.
// It returns the released endpoints.
func (s *Store) DeleteHost(ctx context.Context, name string) ([]api.Endpoint, error) {
	for attempt := 0; ; attempt++ {
		h, err := s.GetHost(ctx, name)
		if errors.Is(err, errdefs.ErrNotFound) {
			// Already removed: release what an interrupted earlier removal left behind, if anything.
			held, lerr := s.hostOwned(ctx, name)
			if lerr != nil {
				return nil, lerr
			}
			if len(held) == 0 {
				return nil, err
			}
			return s.releaseAll(ctx, held)
		}
		if err != nil {
			return nil, err
		}
		ctx2, cancel := s.timeout(ctx)
		tr, err := s.cli.Txn(ctx2).If(
			clientv3.Compare(clientv3.ModRevision(hostKey(name)), "=", h.Revision),
		).Then(clientv3.OpDelete(hostKey(name)), clientv3.OpDelete(aliveKey(name))).Commit()
		cancel()
		if err != nil {
			return nil, s.wrap(fmt.Sprintf("remove host %q", name), err)
		}
		if tr.Succeeded {
			break
		}
		if attempt == maxRetries {
			return nil, fmt.Errorf("remove host %q: it keeps changing; retry: %w", name, errdefs.ErrConflict)
		}
	}
	held, err := s.hostOwned(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("host %q removed, but listing its addresses failed (run ovctl node rm again to release them): %w", name, err)
	}
	return s.releaseAll(ctx, held)
}
