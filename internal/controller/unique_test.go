package controller_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/testutil"
)

// TestNoDuplicates: two controllers on one etcd, 50 concurrent clients, 10,000 allocations across 5
// networks with releases mixed in (and some owners asking twice at once, through both controllers).
// Afterwards every live allocation is unique, present in etcd under both its keys, and nothing released
// is still held.
func TestNoDuplicates(t *testing.T) {
	if testing.Short() {
		testutil.Skip(t, "long test (10,000 allocations): go test -short skips it")
	}
	e := embeddedEtcd(t)
	a := startController(t, []string{e}, 10*time.Second)
	b := startController(t, []string{e}, 10*time.Second)
	ctx := context.Background()
	const (
		networks = 5
		workers  = 50
		total    = 10000
		hosts    = 5
	)
	for i := 0; i < networks; i++ {
		if _, err := a.Admin.CreateNetwork(ctx, api.Network{Name: fmt.Sprintf("n%d", i), Subnet: fmt.Sprintf("10.%d.0.0/20", 10+i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < hosts; i++ {
		if _, err := b.Admin.RegisterHost(ctx, api.Host{Name: fmt.Sprintf("h%d", i), Address: fmt.Sprintf("192.168.70.%d", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	live, released := runAllocations(t, []*client.Client{a.Admin, b.Admin}, workers, total, networks, hosts, nil)
	checkAllocations(t, a.Admin, live, released, networks, hosts)
}

// embeddedEtcd starts an embedded etcd (no fsync) and returns its client URL.
func embeddedEtcd(t testing.TB) string {
	_, e := embeddedController(t)
	return e.ClientURL()
}

type owner struct{ network, host, container string }

// runAllocations runs total allocations from workers goroutines spread over the clients, releasing
// about one in four again. midway (if not nil) runs once when half the allocations are done. A request
// that fails because etcd is unavailable is retried (the same owner: allocation is idempotent), as an
// agent does. It returns what should be held (owner -> IP) and what was released.
func runAllocations(t *testing.T, clients []*client.Client, workers, total, networks, hosts int, midway func()) (map[owner]string, map[owner]bool) {
	t.Helper()
	ctx := context.Background()
	var done atomic.Int64
	var once sync.Once
	var mu sync.Mutex
	live := map[owner]string{}
	released := map[owner]bool{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			c := clients[w%len(clients)]
			other := clients[(w+1)%len(clients)]
			var mine []owner
			for k := 0; k < total/workers; k++ {
				o := owner{fmt.Sprintf("n%d", rng.IntN(networks)), fmt.Sprintf("h%d", rng.IntN(hosts)), fmt.Sprintf("w%d-%d", w, k)}
				ep := api.Endpoint{Network: o.network, Host: o.host, Container: o.container}
				var got api.Endpoint
				var err error
				if k%10 == 0 { // the same owner through both controllers at once: one address
					var got2 api.Endpoint
					var err2 error
					done := make(chan struct{})
					go func() {
						got2, err2 = retry(func() (api.Endpoint, error) { return other.Allocate(ctx, ep) })
						close(done)
					}()
					got, err = retry(func() (api.Endpoint, error) { return c.Allocate(ctx, ep) })
					<-done
					if err == nil && err2 == nil && got.IP != got2.IP {
						t.Errorf("owner %v got two addresses: %s and %s", o, got.IP, got2.IP)
					}
					if err == nil {
						err = err2
					}
				} else {
					got, err = retry(func() (api.Endpoint, error) { return c.Allocate(ctx, ep) })
				}
				if err != nil {
					t.Errorf("allocate %v: %v", o, err)
					return
				}
				mu.Lock()
				live[o] = got.IP
				mu.Unlock()
				if done.Add(1) == int64(total/2) && midway != nil {
					once.Do(midway)
				}
				mine = append(mine, o)
				if rng.IntN(4) == 0 {
					r := mine[rng.IntN(len(mine))]
					if _, err := retry(func() (api.Endpoint, error) { return api.Endpoint{}, c.Release(ctx, r.network, r.host, r.container) }); err != nil {
						t.Errorf("release %v: %v", r, err)
						return
					}
					mu.Lock()
					delete(live, r)
					released[r] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return live, released
}

// retry repeats f while it fails with ErrUnavailable (etcd electing a leader), for up to a minute.
func retry(f func() (api.Endpoint, error)) (api.Endpoint, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		ep, err := f()
		if !errors.Is(err, errdefs.ErrUnavailable) || time.Now().After(deadline) {
			return ep, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkAllocations compares etcd (both the address keys and the owner keys) with what the clients
// were told.
func checkAllocations(t *testing.T, c *client.Client, live map[owner]string, released map[owner]bool, networks, hosts int) {
	t.Helper()
	ctx := context.Background()
	inEtcd := map[owner]string{}
	for i := 0; i < networks; i++ {
		eps, _, err := c.ListEndpoints(ctx, fmt.Sprintf("n%d", i))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]owner{}
		for _, e := range eps {
			o := owner{e.Network, e.Host, e.Container}
			if prev, dup := seen[e.IP]; dup {
				t.Errorf("address %s held twice: %v and %v", e.IP, prev, o)
			}
			seen[e.IP] = o
			if _, dup := inEtcd[o]; dup {
				t.Errorf("owner %v holds two addresses", o)
			}
			inEtcd[o] = e.IP
		}
	}
	owners := 0
	for i := 0; i < hosts; i++ {
		eps, err := c.HostEndpoints(ctx, fmt.Sprintf("h%d", i))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range eps {
			owners++
			if ip := inEtcd[owner{e.Network, e.Host, e.Container}]; ip != e.IP {
				t.Errorf("owner key %v says %s, address key says %q", e, e.IP, ip)
			}
		}
	}
	if owners != len(inEtcd) {
		t.Errorf("%d owner keys but %d address keys", owners, len(inEtcd))
	}
	for o, ip := range live {
		if got, ok := inEtcd[o]; !ok || got != ip {
			t.Errorf("%v was given %s but etcd has %q", o, ip, got)
		}
	}
	for o, ip := range inEtcd {
		if released[o] {
			t.Errorf("%v was released but still holds %s", o, ip)
		} else if _, ok := live[o]; !ok {
			t.Errorf("%v holds %s that nobody was given", o, ip)
		}
	}
	t.Logf("%d live allocations, %d released, all unique and in etcd", len(live), len(released))
}
