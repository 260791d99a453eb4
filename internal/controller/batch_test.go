package controller_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ovnet/ov/api"
)

// TestConcurrentAllocationsAreGrouped: 64 allocations sent at once on one network are stored in fewer
// etcd transactions than allocations (endpoints of one batch share its revision), every address is
// handed out once, each endpoint is what etcd holds, and an owner asking twice gets one address.
func TestConcurrentAllocationsAreGrouped(t *testing.T) {
	s, _ := embeddedController(t)
	ctx := context.Background()
	if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "g", Subnet: "10.77.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.168.71.1"}); err != nil {
		t.Fatal(err)
	}
	const n = 64
	var wg sync.WaitGroup
	eps := make([]api.Endpoint, n+1)
	errs := make([]error, n+1)
	for i := 0; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := fmt.Sprintf("c%02d", i%n) // c00 asks twice
			eps[i], errs[i] = s.Admin.Allocate(ctx, api.Endpoint{Network: "g", Host: "h1", Container: c})
		}()
	}
	wg.Wait()
	revs, ips := map[int64]bool{}, map[string]string{}
	for i, ep := range eps {
		if errs[i] != nil {
			t.Fatalf("allocation %d: %v", i, errs[i])
		}
		revs[ep.Revision] = true
		if other, ok := ips[ep.IP]; ok && other != ep.Container {
			t.Fatalf("%s handed to %s and %s", ep.IP, other, ep.Container)
		}
		ips[ep.IP] = ep.Container
	}
	if eps[0].IP != eps[n].IP {
		t.Fatalf("c00 asked twice and got %s and %s", eps[0].IP, eps[n].IP)
	}
	if len(ips) != n {
		t.Fatalf("%d addresses for %d containers", len(ips), n)
	}
	if len(revs) >= n {
		t.Fatalf("%d allocations in %d etcd transactions: none was grouped", n, len(revs))
	}
	t.Logf("%d allocations stored in %d transactions", n, len(revs))
	held, _, err := s.Admin.ListEndpoints(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != n {
		t.Fatalf("etcd holds %d endpoints, want %d", len(held), n)
	}
	for _, h := range held {
		if ips[h.IP] != h.Container {
			t.Fatalf("etcd holds %s for %s, the clients were told %s", h.IP, h.Container, ips[h.IP])
		}
	}
}
