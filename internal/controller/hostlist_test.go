package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/testutil"
)

// TestHostListForHostsReadsNoEtcd: agents read the host list at registration, on gossip changes and
// every 30 s; at 1,000 hosts those reads, three etcd range reads over every host each, made the
// embedded etcd stop answering. A host's read is answered from the controller's cache: no etcd read,
// the names and addresses of every host (a host registered a moment ago too); an admin's still has
// each host's state.
func TestHostListForHostsReadsNoEtcd(t *testing.T) {
	s, e := embeddedController(t)
	ctx := context.Background()
	h1 := registerHost(t, s, "h1", "192.0.2.1")
	registerHost(t, s, "h2", "192.0.2.2")
	testutil.Eventually(t, 5*time.Second, func() error {
		hs, err := h1.ListHosts(ctx)
		if err != nil {
			return err
		}
		if len(hs) != 2 || hs[0].Name != "h1" || hs[0].Address != "192.0.2.1" || hs[1].Name != "h2" || hs[1].Address != "192.0.2.2" {
			return fmt.Errorf("a host reads %+v; want h1 at 192.0.2.1 and h2 at 192.0.2.2", hs)
		}
		return nil
	})
	before := storetest.RangeCount(t, e)
	for range 50 {
		hs, err := h1.ListHosts(ctx)
		if err != nil || len(hs) != 2 || hs[0].Token != "" || hs[1].Token != "" {
			t.Fatalf("a host's host list: %+v, %v; want both hosts, no token", hs, err)
		}
	}
	if reads := storetest.RangeCount(t, e) - before; reads != 0 {
		t.Errorf("50 host lists read by a host made %v etcd reads; want none (the controller's cache)", reads)
	}
	hs, err := s.Admin.ListHosts(ctx)
	if err != nil || len(hs) != 2 || hs[0].State != api.HostAlive {
		t.Fatalf("an admin's host list: %+v, %v; want both hosts with their state (h1 alive)", hs, err)
	}
}
