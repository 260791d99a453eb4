package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// ErrStale marks an allocation that compared a network or host revision that is no longer current
// (the object was removed and recreated): re-read it and retry. It comes wrapped with ErrConflict.
var ErrStale = errors.New("stale revision")

// TakenError is the answer to an allocation of an address that another owner holds.
type TakenError struct {
	Holder api.Endpoint
}

func (e *TakenError) Error() string {
	return fmt.Sprintf("network %q: address %s is already used by container %s on host %s; choose another address or leave it out",
		e.Holder.Network, e.Holder.IP, e.Holder.Container, e.Holder.Host)
}

// Unwrap makes a TakenError an errdefs.ErrConflict.
func (e *TakenError) Unwrap() error { return errdefs.ErrConflict }

func encodeEndpoint(ep api.Endpoint) string {
	ep.Revision = 0
	b, _ := json.Marshal(ep)
	return string(b)
}

func decodeEndpoint(kv *mvccpb.KeyValue) (api.Endpoint, error) {
	var ep api.Endpoint
	if err := json.Unmarshal(kv.Value, &ep); err != nil {
		return api.Endpoint{}, fmt.Errorf("store: corrupt endpoint record %s: %v", kv.Key, err)
	}
	ep.Revision = kv.ModRevision
	return ep, nil
}

// Allocate gives ep (network, host, container) the address ip in one transaction that succeeds only
// if the network is still the incarnation n (same create revision) and the host record is still h
// (same mod revision, so the endpoint's VTEP is the host's current address), the address is free and the owner
// holds nothing yet; with moveCursor (ip came from next-fit, not from the user) it also moves the
// network's cursor to ip. When the owner already holds an
// address it returns that endpoint with created == false (whatever ip was asked). An address held by
// another owner is a *TakenError.
func (s *Store) Allocate(ctx context.Context, n Network, h Host, ep api.Endpoint, ip netip.Addr, moveCursor bool) (out api.Endpoint, created bool, err error) {
	for attempt := 0; attempt < maxRetries; attempt++ {
		out, created, again, err := s.allocateOnce(ctx, n, h, ep, ip, moveCursor)
		if !again {
			return out, created, err
		}
	}
	return api.Endpoint{}, false, fmt.Errorf("allocate %s in network %q for %s: the owner's record keeps changing; retry: %w", ip, n.Name, ep.Container, errdefs.ErrConflict)
}

// allocateOnce is one attempt of Allocate; again says the state changed between the transaction and
// its reads and the attempt should be repeated.
func (s *Store) allocateOnce(ctx context.Context, n Network, h Host, ep api.Endpoint, ip netip.Addr, moveCursor bool) (out api.Endpoint, created, again bool, err error) {
	ep.Network, ep.Host = n.Name, h.Name
	ep.IP, ep.VTEP = ip.String(), h.Address
	ep.Created = time.Now().UTC().Truncate(time.Millisecond)
	ctx2, cancel := s.timeout(ctx)
	tr, err := s.allocateTxn(ctx2, n, h, ep, ip, moveCursor).Commit()
	cancel()
	what := func() string {
		return fmt.Sprintf("allocate %s in network %q for %s on %s", ip, n.Name, ep.Container, h.Name)
	}
	if err != nil {
		return api.Endpoint{}, false, false, s.wrap(what(), err)
	}
	if tr.Succeeded {
		ep.Revision = tr.Header.Revision
		return ep, true, false, nil
	}
	get := func(i int) []*mvccpb.KeyValue { return tr.Responses[i].GetResponseRange().Kvs }
	if kvs := get(0); len(kvs) == 0 {
		return api.Endpoint{}, false, false, notFoundNetwork(n.Name)
	} else if kvs[0].CreateRevision != n.CreateRevision {
		return api.Endpoint{}, false, false, fmt.Errorf("network %q was removed and created again meanwhile: %w %w", n.Name, ErrStale, errdefs.ErrConflict)
	}
	if kvs := get(1); len(kvs) == 0 {
		return api.Endpoint{}, false, false, notFoundHost(h.Name)
	} else if kvs[0].ModRevision != h.Revision {
		return api.Endpoint{}, false, false, fmt.Errorf("host %q changed meanwhile (address, labels, heartbeat or a new registration): %w %w", h.Name, ErrStale, errdefs.ErrConflict)
	}
	if kvs := get(2); len(kvs) > 0 {
		held, err := netip.ParseAddr(string(kvs[0].Value))
		if err != nil {
			return api.Endpoint{}, false, false, fmt.Errorf("store: corrupt owner record %s: %v", kvs[0].Key, err)
		}
		ctx2, cancel := s.timeout(ctx)
		resp, err := s.cli.Get(ctx2, endpointKey(n.Name, held))
		cancel()
		if err != nil {
			return api.Endpoint{}, false, false, s.wrap(what(), err)
		}
		if len(resp.Kvs) == 0 { // released between the two reads: start over
			return api.Endpoint{}, false, true, nil
		}
		cur, err := decodeEndpoint(resp.Kvs[0])
		return cur, false, false, err
	}
	if kvs := get(3); len(kvs) > 0 {
		holder, err := decodeEndpoint(kvs[0])
		if err != nil {
			return api.Endpoint{}, false, false, err
		}
		return api.Endpoint{}, false, false, &TakenError{Holder: holder}
	}
	// Everything changed back between the transaction and its Else reads: try again.
	return api.Endpoint{}, false, true, nil
}

// allocateTxn is the transaction of one allocation attempt of ep (its network, host, container and
// IP filled in) at ip: see Allocate. Its Else reads the network, host, owner and address keys, in
// that order.
func (s *Store) allocateTxn(ctx context.Context, n Network, h Host, ep api.Endpoint, ip netip.Addr, moveCursor bool) clientv3.Txn {
	nk, hk := networkKey(n.Name), hostKey(h.Name)
	ok, ek := ownerKey(n.Name, h.Name, ep.Container), endpointKey(n.Name, ip)
	then := []clientv3.Op{clientv3.OpPut(ek, encodeEndpoint(ep)), clientv3.OpPut(ok, ep.IP)}
	if moveCursor {
		then = append(then, clientv3.OpPut(cursorKey(n.Name), ep.IP))
	}
	return s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(nk), "=", n.CreateRevision),
		clientv3.Compare(clientv3.ModRevision(hk), "=", h.Revision),
		clientv3.Compare(clientv3.CreateRevision(ok), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(ek), "=", 0),
	).Then(then...).Else(
		clientv3.OpGet(nk, clientv3.WithKeysOnly()),
		clientv3.OpGet(hk, clientv3.WithKeysOnly()),
		clientv3.OpGet(ok),
		clientv3.OpGet(ek),
	)
}

// BareAllocate commits the transaction of one Allocate attempt (container on host h gets ip in n,
// and the cursor moves to ip) and nothing around it: no request timeout, no retry, no reading of the
// answer. It is the bare-etcd reference that benchmarks compare Allocate with; an attempt that does
// not succeed is an error.
func (s *Store) BareAllocate(ctx context.Context, n Network, h Host, container string, ip netip.Addr) error {
	ep := api.Endpoint{Network: n.Name, Host: h.Name, Container: container, IP: ip.String(), VTEP: h.Address, Created: time.Now().UTC()}
	tr, err := s.allocateTxn(ctx, n, h, ep, ip, true).Commit()
	if err != nil {
		return err
	}
	if !tr.Succeeded {
		return fmt.Errorf("bare allocation of %s in network %q failed: %w", ip, n.Name, errdefs.ErrConflict)
	}
	return nil
}

// Release frees the address (network, host, container) holds and returns it. Releasing what is not
// held returns a zero Endpoint and no error; an unknown network is ErrNotFound.
func (s *Store) Release(ctx context.Context, network, host, container string) (api.Endpoint, error) {
	ok := ownerKey(network, host, container)
	what := fmt.Sprintf("release %s on %s from network %q", container, host, network)
	for attempt := 0; attempt < maxRetries; attempt++ {
		ctx2, cancel := s.timeout(ctx)
		resp, err := s.cli.Txn(ctx2).Then(
			clientv3.OpGet(networkKey(network), clientv3.WithKeysOnly()),
			clientv3.OpGet(ok),
		).Commit()
		cancel()
		if err != nil {
			return api.Endpoint{}, s.wrap(what, err)
		}
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return api.Endpoint{}, notFoundNetwork(network)
		}
		kvs := resp.Responses[1].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return api.Endpoint{}, nil
		}
		o := owned{ep: api.Endpoint{Network: network, Host: host, Container: container, IP: string(kvs[0].Value)}, ownerRev: kvs[0].ModRevision}
		done, err := s.releaseBatch(ctx, []owned{o})
		if err != nil {
			return api.Endpoint{}, s.wrap(what, err)
		}
		if done {
			return o.ep, nil
		}
	}
	return api.Endpoint{}, fmt.Errorf("%s: it keeps changing; retry: %w", what, errdefs.ErrConflict)
}

// owned is one allocation as its owner key records it.
type owned struct {
	ep       api.Endpoint // Network, Host, Container, IP
	ownerRev int64        // ModRevision of the owner key
}

// releaseBatch deletes the owner and address keys of every item in one transaction that requires every
// owner key to be unchanged. It reports whether it did.
func (s *Store) releaseBatch(ctx context.Context, items []owned) (bool, error) {
	cmps := make([]clientv3.Cmp, 0, len(items))
	ops := make([]clientv3.Op, 0, 2*len(items))
	for _, o := range items {
		ip, err := netip.ParseAddr(o.ep.IP)
		if err != nil {
			return false, fmt.Errorf("store: corrupt owner record for %s/%s/%s: %q", o.ep.Network, o.ep.Host, o.ep.Container, o.ep.IP)
		}
		k := ownerKey(o.ep.Network, o.ep.Host, o.ep.Container)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", o.ownerRev))
		ops = append(ops, clientv3.OpDelete(k), clientv3.OpDelete(endpointKey(o.ep.Network, ip)))
	}
	ctx2, cancel := s.timeout(ctx)
	defer cancel()
	tr, err := s.cli.Txn(ctx2).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, err
	}
	return tr.Succeeded, nil
}

// releaseAll releases items in batches; an item whose owner key changed meanwhile (released, or
// allocated again) is left alone. It returns what it released.
func (s *Store) releaseAll(ctx context.Context, items []owned) ([]api.Endpoint, error) {
	const batch = 40 // 40 compares and 80 deletes: under etcd's default limit of 128 operations
	var out []api.Endpoint
	for len(items) > 0 {
		n := min(batch, len(items))
		chunk := items[:n]
		items = items[n:]
		done, err := s.releaseBatch(ctx, chunk)
		if err != nil {
			return out, s.wrap("release addresses", err)
		}
		if done {
			for _, o := range chunk {
				out = append(out, o.ep)
			}
			continue
		}
		for _, o := range chunk { // one changed: go one by one
			done, err := s.releaseBatch(ctx, []owned{o})
			if err != nil {
				return out, s.wrap("release addresses", err)
			}
			if done {
				out = append(out, o.ep)
			}
		}
	}
	return out, nil
}

// hostOwned lists every allocation of host, in every network.
func (s *Store) hostOwned(ctx context.Context, host string) ([]owned, error) {
	ctx2, cancel := s.timeout(ctx)
	resp, err := s.cli.Get(ctx2, networksPfx, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	cancel()
	if err != nil {
		return nil, s.wrap(fmt.Sprintf("list addresses of host %q", host), err)
	}
	var nets []string
	for _, kv := range resp.Kvs {
		nets = append(nets, string(kv.Key[len(networksPfx):]))
	}
	var out []owned
	for len(nets) > 0 {
		n := min(100, len(nets))
		ops := make([]clientv3.Op, 0, n)
		for _, net := range nets[:n] {
			ops = append(ops, clientv3.OpGet(hostOwnersPrefix(net, host), clientv3.WithPrefix()))
		}
		chunk := nets[:n]
		nets = nets[n:]
		ctx2, cancel := s.timeout(ctx)
		tr, err := s.cli.Txn(ctx2).Then(ops...).Commit()
		cancel()
		if err != nil {
			return nil, s.wrap(fmt.Sprintf("list addresses of host %q", host), err)
		}
		for i, r := range tr.Responses {
			pfx := hostOwnersPrefix(chunk[i], host)
			for _, kv := range r.GetResponseRange().Kvs {
				out = append(out, owned{
					ep:       api.Endpoint{Network: chunk[i], Host: host, Container: string(kv.Key[len(pfx):]), IP: string(kv.Value)},
					ownerRev: kv.ModRevision,
				})
			}
		}
	}
	return out, nil
}

// HostEndpoints lists the allocations of host in every network (network, host, container and IP).
func (s *Store) HostEndpoints(ctx context.Context, host string) ([]api.Endpoint, error) {
	held, err := s.hostOwned(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]api.Endpoint, len(held))
	for i, o := range held {
		out[i] = o.ep
	}
	return out, nil
}

// Reconcile releases every allocation of host that have does not list (matched on network and
// container, and on the address when have gives one). It returns what it released.
func (s *Store) Reconcile(ctx context.Context, host string, have []api.Endpoint) ([]api.Endpoint, error) {
	type key struct{ network, container string }
	keep := map[key]string{}
	for _, e := range have {
		keep[key{e.Network, e.Container}] = e.IP
	}
	held, err := s.hostOwned(ctx, host)
	if err != nil {
		return nil, err
	}
	var drop []owned
	for _, o := range held {
		ip, ok := keep[key{o.ep.Network, o.ep.Container}]
		if ok && (ip == "" || ip == o.ep.IP) {
			continue
		}
		drop = append(drop, o)
	}
	return s.releaseAll(ctx, drop)
}

// RetagHost rewrites the VTEP of every endpoint of host to vtep (after the host's underlay address
// changed), each with a compare-and-swap on the endpoint's revision.
func (s *Store) RetagHost(ctx context.Context, host, vtep string) error {
	held, err := s.hostOwned(ctx, host)
	if err != nil {
		return err
	}
	for _, o := range held {
		ip, err := netip.ParseAddr(o.ep.IP)
		if err != nil {
			continue
		}
		k := endpointKey(o.ep.Network, ip)
		for attempt := 0; attempt < maxRetries; attempt++ {
			ctx2, cancel := s.timeout(ctx)
			resp, err := s.cli.Get(ctx2, k)
			cancel()
			if err != nil {
				return s.wrap(fmt.Sprintf("update endpoints of host %q", host), err)
			}
			if len(resp.Kvs) == 0 {
				break
			}
			ep, err := decodeEndpoint(resp.Kvs[0])
			if err != nil || ep.Host != host || ep.VTEP == vtep {
				break
			}
			ep.VTEP = vtep
			ctx2, cancel = s.timeout(ctx)
			tr, err := s.cli.Txn(ctx2).If(clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision)).
				Then(clientv3.OpPut(k, encodeEndpoint(ep))).Commit()
			cancel()
			if err != nil {
				return s.wrap(fmt.Sprintf("update endpoints of host %q", host), err)
			}
			if tr.Succeeded {
				break
			}
		}
	}
	return nil
}

// ListEndpoints reads the endpoints of a network and the revision they are current at.
func (s *Store) ListEndpoints(ctx context.Context, network string) ([]api.Endpoint, int64, error) {
	ctx2, cancel := s.timeout(ctx)
	defer cancel()
	tr, err := s.cli.Txn(ctx2).Then(
		clientv3.OpGet(networkKey(network), clientv3.WithKeysOnly()),
		clientv3.OpGet(endpointsPrefix(network), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, 0, s.wrap(fmt.Sprintf("list endpoints of network %q", network), err)
	}
	if len(tr.Responses[0].GetResponseRange().Kvs) == 0 {
		return nil, 0, notFoundNetwork(network)
	}
	eps, err := decodeEndpoints(tr.Responses[1].GetResponseRange().Kvs)
	return eps, tr.Header.Revision, err
}

func decodeEndpoints(kvs []*mvccpb.KeyValue) ([]api.Endpoint, error) {
	out := make([]api.Endpoint, 0, len(kvs))
	for _, kv := range kvs {
		ep, err := decodeEndpoint(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, ep)
	}
	sortEndpoints(out)
	return out, nil
}

// sortEndpoints sorts endpoints by address.
func sortEndpoints(eps []api.Endpoint) {
	sort.Slice(eps, func(i, j int) bool {
		a, _ := netip.ParseAddr(eps[i].IP)
		b, _ := netip.ParseAddr(eps[j].IP)
		return a.Less(b)
	})
}

// WatchEndpoints streams the endpoints of a network to fn: a snapshot first (unless fromRev > 0 and
// that history is still there), then every change, and progress events; a fresh snapshot whenever the
// history it needs was compacted or the store is behind fromRev (restored from a backup). Events of
// one revision come in etcd's order, the last one marked Last. It returns when ctx ends or fn fails;
// an unknown network is ErrNotFound.
func (s *Store) WatchEndpoints(ctx context.Context, network string, fromRev int64, fn func(api.EndpointEvent) error) error {
	if _, err := s.GetNetwork(ctx, network); err != nil {
		return err
	}
	return s.listWatch(ctx, endpointsPrefix(network), fromRev, true, endpointWatcher{network: network, fn: fn})
}

type endpointWatcher struct {
	network string
	fn      func(api.EndpointEvent) error
}

func (w endpointWatcher) Snapshot(recs []Record, rev int64) error {
	eps := make([]api.Endpoint, 0, len(recs))
	for _, r := range recs {
		ep, err := r.Endpoint()
		if err != nil {
			return err
		}
		eps = append(eps, ep)
	}
	sortEndpoints(eps)
	return w.fn(api.EndpointEvent{Type: api.EventSnapshot, Endpoints: eps, Revision: rev})
}

func (w endpointWatcher) Event(ev Event) error {
	r := ev.Record
	if ev.Type == EventPut {
		ep, err := r.Endpoint()
		if err != nil {
			return err
		}
		return w.fn(api.EndpointEvent{Type: api.EventPut, Endpoint: &ep, Revision: r.Revision, Last: ev.Last})
	}
	var ep api.Endpoint
	if r.HasValue() {
		ep, _ = r.Endpoint()
	} else if r.IP.IsValid() {
		ep = api.Endpoint{Network: r.Name, IP: r.IP.String()}
	}
	ep.Revision = r.Revision
	return w.fn(api.EndpointEvent{Type: api.EventDelete, Endpoint: &ep, Revision: r.Revision, Last: ev.Last})
}

func (w endpointWatcher) Progress(rev int64) error {
	return w.fn(api.EndpointEvent{Type: api.EventProgress, Revision: rev})
}
