package store

import (
	"context"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Observer is told of every key-value request the store makes to etcd (the controller's metrics:
// internal/controller/metrics.go). Its methods are called on the request's goroutine and must not
// block.
type Observer interface {
	// EtcdRequest: a request of kind op ("get", "put", "delete", "txn", "compact") took took and
	// ended with err.
	EtcdRequest(op string, took time.Duration, err error)
	// EtcdTxn: a transaction was committed; succeeded is false when its compares failed (another
	// writer won: a conflict the caller retries or reports).
	EtcdTxn(succeeded bool)
}

// SetObserver makes o observe the store's etcd requests from now on; nil: none. The store has one
// observer at a time (the last set).
func (s *Store) SetObserver(o Observer) {
	if o == nil {
		s.obs.Store(nil)
		return
	}
	s.obs.Store(&o)
}

// observedKV is the etcd client's KV with every request timed for the store's Observer.
type observedKV struct {
	clientv3.KV
	obs *atomic.Pointer[Observer]
}

func (k observedKV) observe(op string, start time.Time, err error) {
	if o := k.obs.Load(); o != nil {
		(*o).EtcdRequest(op, time.Since(start), err)
	}
}

func (k observedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	start := time.Now()
	r, err := k.KV.Put(ctx, key, val, opts...)
	k.observe("put", start, err)
	return r, err
}

func (k observedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	start := time.Now()
	r, err := k.KV.Get(ctx, key, opts...)
	k.observe("get", start, err)
	return r, err
}

func (k observedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	start := time.Now()
	r, err := k.KV.Delete(ctx, key, opts...)
	k.observe("delete", start, err)
	return r, err
}

func (k observedKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	start := time.Now()
	r, err := k.KV.Compact(ctx, rev, opts...)
	k.observe("compact", start, err)
	return r, err
}

func (k observedKV) Txn(ctx context.Context) clientv3.Txn {
	return &observedTxn{Txn: k.KV.Txn(ctx), kv: k}
}

// observedTxn times Commit and reports whether the compares held.
type observedTxn struct {
	clientv3.Txn
	kv observedKV
}

func (t *observedTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.Txn = t.Txn.If(cs...); return t }
func (t *observedTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(ops...); return t }
func (t *observedTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }

func (t *observedTxn) Commit() (*clientv3.TxnResponse, error) {
	start := time.Now()
	r, err := t.Txn.Commit()
	t.kv.observe("txn", start, err)
	if o := t.kv.obs.Load(); o != nil && err == nil {
		(*o).EtcdTxn(r.Succeeded)
	}
	return r, err
}
