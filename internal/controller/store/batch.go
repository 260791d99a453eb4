package store

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ovnet/ov/api"
)

// MaxBatch is the most allocations AllocateBatch takes in one transaction (each adds two compares and
// two puts; etcd refuses a transaction of more than 128 operations by default).
const MaxBatch = 32

// BatchItem is one allocation of a batch: ep (its container) at ip in network n for host h.
type BatchItem struct {
	N  Network
	H  Host
	EP api.Endpoint
	IP netip.Addr
}

// AllocateBatch makes every allocation of items in one transaction, with the guards of Allocate for
// each (network incarnation, host record, owner and address free), and moves the network's cursor to
// the last item's address; the items must be of one network, with distinct owners and addresses and one
// record revision per host (each endpoint carries its host's address from that record). It is
// all or nothing: ok is false (and nothing written) when any guard fails, and the caller then
// allocates them one by one with Allocate, which tells each what happened. On success it returns the
// endpoints as stored, in the order of items.
func (s *Store) AllocateBatch(ctx context.Context, items []BatchItem) (out []api.Endpoint, ok bool, err error) {
	if len(items) == 0 || len(items) > MaxBatch {
		return nil, false, fmt.Errorf("store: a batch of %d allocations (1 to %d)", len(items), MaxBatch)
	}
	n := items[0].N
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(networkKey(n.Name)), "=", n.CreateRevision)}
	hosts := map[string]int64{}
	var ops []clientv3.Op
	created := time.Now().UTC().Truncate(time.Millisecond)
	out = make([]api.Endpoint, len(items))
	for i, it := range items {
		if it.N.Name != n.Name || it.N.CreateRevision != n.CreateRevision {
			return nil, false, fmt.Errorf("store: a batch of allocations spans networks %q and %q", n.Name, it.N.Name)
		}
		if rev, ok := hosts[it.H.Name]; !ok {
			hosts[it.H.Name] = it.H.Revision
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(hostKey(it.H.Name)), "=", it.H.Revision))
		} else if rev != it.H.Revision {
			return nil, false, fmt.Errorf("store: a batch of allocations holds two revisions of host %q", it.H.Name)
		}
		ep := it.EP
		ep.Network, ep.Host = n.Name, it.H.Name
		ep.IP, ep.VTEP = it.IP.String(), it.H.Address
		ep.Created = created
		ok, ek := ownerKey(n.Name, it.H.Name, ep.Container), endpointKey(n.Name, it.IP)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(ok), "=", 0), clientv3.Compare(clientv3.CreateRevision(ek), "=", 0))
		ops = append(ops, clientv3.OpPut(ek, encodeEndpoint(ep)), clientv3.OpPut(ok, ep.IP))
		out[i] = ep
	}
	ops = append(ops, clientv3.OpPut(cursorKey(n.Name), items[len(items)-1].IP.String()))
	ctx2, cancel := s.timeout(ctx)
	defer cancel()
	tr, err := s.cli.Txn(ctx2).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return nil, false, s.wrap(fmt.Sprintf("allocate %d addresses in network %q", len(items), n.Name), err)
	}
	if !tr.Succeeded {
		return nil, false, nil
	}
	for i := range out {
		out[i].Revision = tr.Header.Revision
	}
	return out, true, nil
}
