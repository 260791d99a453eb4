package controller_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/testutil"
)

// TestClusterMemberDies: two controllers on a three-member etcd cluster (/usr/bin/etcd processes);
// the leader is killed half-way through 3,000 allocations. Allocations go on (requests that fail during
// the election are retried, as an agent does), and afterwards none is lost or duplicated.
func TestClusterMemberDies(t *testing.T) {
	if testing.Short() {
		testutil.Skip(t, "long test (etcd cluster): go test -short skips it")
	}
	cl := storetest.StartCluster(t, 3)
	for _, m := range cl.Members {
		storetest.WaitReady(t, m.ClientURL, 30*time.Second)
	}
	a := startController(t, cl.Endpoints(), 5*time.Second)
	b := startController(t, cl.Endpoints(), 5*time.Second)
	ctx := context.Background()
	testutil.Eventually(t, 60*time.Second, func() error { return a.Admin.Health(ctx) })
	const networks, hosts = 3, 3
	for i := 0; i < networks; i++ {
		if _, err := a.Admin.CreateNetwork(ctx, api.Network{Name: fmt.Sprintf("n%d", i), Subnet: fmt.Sprintf("10.%d.0.0/20", 30+i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < hosts; i++ {
		if _, err := b.Admin.RegisterHost(ctx, api.Host{Name: fmt.Sprintf("h%d", i), Address: fmt.Sprintf("192.168.71.%d", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	killed := ""
	live, released := runAllocations(t, []*client.Client{a.Admin, b.Admin}, 20, 3000, networks, hosts, func() {
		m := cl.Leader()
		killed = m.Name
		cl.Stop(m)
	})
	if killed == "" {
		t.Fatal("no member was stopped")
	}
	t.Logf("killed the leader %s half-way", killed)
	checkAllocations(t, a.Admin, live, released, networks, hosts)
}

// TestEtcdUnreachable: with its etcd down the API answers 503 with a message that says so, and works
// again by itself once etcd is back.
func TestEtcdUnreachable(t *testing.T) {
	cl := storetest.StartCluster(t, 1)
	m := cl.Members[0]
	storetest.WaitReady(t, m.ClientURL, 30*time.Second)
	s := startController(t, cl.Endpoints(), 2*time.Second)
	ctx := context.Background()
	testutil.Eventually(t, 60*time.Second, func() error { return s.Admin.Health(ctx) })
	if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "n", Subnet: "10.40.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.RegisterHost(ctx, api.Host{Name: "h", Address: "192.168.72.1"}); err != nil {
		t.Fatal(err)
	}
	before, err := s.Admin.Allocate(ctx, api.Endpoint{Network: "n", Host: "h", Container: "before"})
	if err != nil {
		t.Fatal(err)
	}

	cl.Stop(m)
	for name, call := range map[string]func() error{
		"health": func() error { return s.Admin.Health(ctx) },
		"list":   func() error { _, err := s.Admin.ListNetworks(ctx); return err },
		"allocate": func() error {
			_, err := s.Admin.Allocate(ctx, api.Endpoint{Network: "n", Host: "h", Container: "during"})
			return err
		},
	} {
		err := call()
		if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "etcd "+m.ClientURL) || !strings.Contains(err.Error(), "retries by itself") {
			t.Fatalf("%s with etcd down: %v; want 503 naming etcd", name, err)
		}
	}

	// An unauthenticated client (health needs no token; a bad token on an API call) learns no
	// internal endpoint from the 503.
	for name, call := range map[string]func() error{
		"health without a token": func() error { return newClient(t, s.URL, "").Health(ctx) },
		"join with a bad token": func() error {
			_, err := newClient(t, s.URL, "ovh.h.forged.token").ListNetworks(ctx)
			return err
		},
	} {
		if err := call(); err != nil && strings.Contains(err.Error(), m.ClientURL) {
			t.Errorf("%s with etcd down: %v; names etcd's endpoint to an unauthenticated client", name, err)
		}
	}

	cl.Start(m)
	testutil.Eventually(t, 60*time.Second, func() error { return s.Admin.Health(ctx) })
	after, err := s.Admin.Allocate(ctx, api.Endpoint{Network: "n", Host: "h", Container: "after"})
	if err != nil {
		t.Fatal(err)
	}
	if after.IP == before.IP {
		t.Fatalf("after etcd came back, %s was handed out twice", after.IP)
	}
	eps, _, err := s.Admin.ListEndpoints(ctx, "n")
	if err != nil {
		t.Fatal(err)
	}
	// "during" may or may not have been committed before etcd went away; "before" and "after" are there.
	have := map[string]bool{}
	for _, e := range eps {
		have[e.Container] = true
	}
	if !have["before"] || !have["after"] {
		t.Fatalf("endpoints after recovery: %+v", eps)
	}
}
