package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func dataplaneKey(host string) string { return dataplanePfx + host }

// PutDataplane records which hosts reporter currently finds unreachable on the data plane (its own
// probes, see internal/membership), under a lease of ttl: a report its agent stops renewing (the
// agent is stopped, the host is gone) goes away by itself. An empty list deletes the report. The write
// is conditional on reporter being a registered host, so a removed host leaves no report behind.
func (s *Store) PutDataplane(ctx context.Context, reporter string, unreachable []string, ttl time.Duration) error {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	what := fmt.Sprintf("record the data plane report of host %q", reporter)
	exists := clientv3.Compare(clientv3.CreateRevision(hostKey(reporter)), ">", 0)
	if len(unreachable) == 0 {
		_, err := s.cli.Txn(ctx).Then(clientv3.OpDelete(dataplaneKey(reporter))).Commit()
		return s.wrap(what, err)
	}
	lease, err := s.cli.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return s.wrap(what, err)
	}
	b, _ := json.Marshal(slices.Sorted(slices.Values(unreachable)))
	resp, err := s.cli.Txn(ctx).If(exists).Then(clientv3.OpPut(dataplaneKey(reporter), string(b), clientv3.WithLease(lease.ID))).Commit()
	if err != nil {
		return s.wrap(what, err)
	}
	if !resp.Succeeded {
		_, _ = s.cli.Revoke(ctx, lease.ID)
		return notFoundHost(reporter)
	}
	return nil
}

// ListDataplane returns every live data plane report: for each host, the hosts that report it
// unreachable (sorted).
func (s *Store) ListDataplane(ctx context.Context) (map[string][]string, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, dataplanePfx, clientv3.WithPrefix())
	if err != nil {
		return nil, s.wrap("list the data plane reports", err)
	}
	out := map[string][]string{}
	for _, kv := range resp.Kvs {
		reporter := string(kv.Key[len(dataplanePfx):])
		var unreachable []string
		if json.Unmarshal(kv.Value, &unreachable) != nil {
			continue // a report this version cannot read says nothing
		}
		for _, h := range unreachable {
			out[h] = append(out[h], reporter)
		}
	}
	for h := range out {
		slices.Sort(out[h])
	}
	return out, nil
}
