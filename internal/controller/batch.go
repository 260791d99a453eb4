package controller

import (
	"context"
	"net/netip"
	"sync"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
)

// Group commit of allocations. While one allocation transaction of a network is on its way to etcd,
// the allocations of that network that arrive meanwhile queue; when it is back, the first of them
// sends the whole queue as one transaction (store.AllocateBatch, every allocation with its own guards).
// Alone, an allocation goes as before, by itself; a batch whose guards do not all hold writes nothing,
// and its allocations go one by one (Allocate's usual path, which tells each what happened). Concurrent
// allocations thus cost etcd one transaction and one disk sync for many.

// batchers holds the group-commit queue of each network.
type batchers struct {
	mu sync.Mutex
	by map[string]*batcher
}

type batcher struct {
	mu    sync.Mutex
	busy  bool // a transaction of this network is on its way (or its leader is sending the queue)
	queue []*batchReq
}

type batchReq struct {
	item store.BatchItem
	done chan batchRes // buffered: the leader never blocks on it
}

type batchRes struct {
	ep api.Endpoint
	ok bool // stored; false: allocate it by itself
}

func (bs *batchers) of(network string) *batcher {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.by == nil {
		bs.by = map[string]*batcher{}
	}
	b, ok := bs.by[network]
	if !ok {
		b = &batcher{}
		bs.by[network] = b
	}
	return b
}

// allocateGrouped stores the allocation of ep at ip as part of a batch when another allocation of the
// network is on its way; ok false means it was not stored and the caller allocates it by itself. With
// alone true the caller went first (nothing was on its way) and must call doneAlone once its own
// allocation is over, whatever its outcome. The caller holds ip from the cache (distinct from every
// other caller's).
func (c *Controller) allocateGrouped(n store.Network, h store.Host, ep api.Endpoint, ip netip.Addr) (out api.Endpoint, ok, alone bool) {
	b := c.batches.of(n.Name)
	r := &batchReq{item: store.BatchItem{N: n, H: h, EP: ep, IP: ip}, done: make(chan batchRes, 1)}
	b.mu.Lock()
	if !b.busy { // nothing on its way: go by yourself, and let those who come meanwhile queue
		b.busy = true
		b.mu.Unlock()
		return api.Endpoint{}, false, true
	}
	b.queue = append(b.queue, r)
	b.mu.Unlock()
	res := <-r.done
	return res.ep, res.ok, false
}

// doneAlone ends an allocation that went by itself (allocateGrouped returned false while nothing was
// on its way): it sends what queued meanwhile, batch after batch, then lets the next one go alone.
func (c *Controller) doneAlone(network string) {
	b := c.batches.of(network)
	b.mu.Lock()
	for len(b.queue) > 0 {
		k := min(len(b.queue), store.MaxBatch)
		batch := b.queue[:k:k]
		b.queue = b.queue[k:]
		b.mu.Unlock()
		c.sendBatch(batch)
		b.mu.Lock()
	}
	b.busy = false
	b.mu.Unlock()
}

// sendBatch stores batch in one transaction and answers each request. A lone request, or a batch that
// could not be stored as a whole, is answered "not stored" (each then goes by itself).
func (c *Controller) sendBatch(batch []*batchReq) {
	fail := func(rs []*batchReq) {
		for _, r := range rs {
			r.done <- batchRes{}
		}
	}
	// Distinct owners and addresses only (a container allocating twice at once goes by itself), one
	// network incarnation, and one record revision per host (the guard compares it, and each endpoint
	// carries its host's address from that record).
	seen := map[string]bool{}
	hostRev := map[string]int64{}
	var items []store.BatchItem
	var in, out []*batchReq
	for _, r := range batch {
		owner, addr := r.item.H.Name+"/"+r.item.EP.Container, r.item.IP.String()
		rev, known := hostRev[r.item.H.Name]
		if seen[owner] || seen[addr] || r.item.N.CreateRevision != batch[0].item.N.CreateRevision ||
			known && rev != r.item.H.Revision {
			out = append(out, r)
			continue
		}
		hostRev[r.item.H.Name] = r.item.H.Revision
		seen[owner], seen[addr] = true, true
		in = append(in, r)
		items = append(items, r.item)
	}
	fail(out)
	if len(in) < 2 {
		fail(in)
		return
	}
	eps, ok, err := c.st.AllocateBatch(context.Background(), items) // the store bounds it with its request timeout
	if err != nil || !ok {
		fail(in)
		return
	}
	for i, r := range in {
		r.done <- batchRes{ep: eps[i], ok: true}
	}
}
