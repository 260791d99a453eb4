package storetest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ReleaseAllInOneTxn releases every address of network in one etcd transaction (its endpoint and
// owner keys, as named in store/keys.go), as a reconcile or a host removal does in batches of 40: one
// revision, one delete event per address. It returns the transaction's revision.
func ReleaseAllInOneTxn(t testing.TB, endpoints []string, network string) int64 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpDelete("/ov/v1/endpoints/"+network+"/", clientv3.WithPrefix()),
		clientv3.OpDelete("/ov/v1/owners/"+network+"/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		t.Fatalf("release every address of network %q in one transaction: %v", network, err)
	}
	return resp.Header.Revision
}
