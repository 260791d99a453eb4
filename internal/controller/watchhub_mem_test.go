package controller_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/testutil"
)

// BenchmarkWatchStreamMemory reports the heap one open, idle watch stream costs (controller and
// client together, both in this process), with the shared watch and, as the reference, with a watch
// of its own per stream: go test -run - -bench WatchStreamMemory ./internal/controller/
func BenchmarkWatchStreamMemory(b *testing.B) {
	for _, hub := range []bool{true, false} {
		b.Run(fmt.Sprintf("hub=%v", hub), func(b *testing.B) {
			if !hub {
				defer controller.DisableWatchHub()()
			}
			s, _ := embeddedController(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "n", Subnet: "10.49.0.0/16"}); err != nil {
				b.Fatal(err)
			}
			const streams = 500 // from 10 hosts: a token may hold 64
			var hosts []*client.Client
			for i := range 10 {
				hosts = append(hosts, registerHost(b, s, fmt.Sprintf("h%d", i), fmt.Sprintf("192.168.78.%d", i+1)))
			}
			heap := func() uint64 {
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				return m.HeapAlloc
			}
			before := heap()
			var open atomic.Int64
			for i := range streams {
				h := hosts[i%len(hosts)]
				go func() {
					_ = h.WatchEndpoints(ctx, "n", 0, func(ev api.EndpointEvent) error {
						if ev.Type == api.EventSnapshot {
							open.Add(1)
						}
						return nil
					})
				}()
			}
			testutil.Eventually(b, 60*time.Second, func() error {
				if n := open.Load(); n < streams {
					return fmt.Errorf("%d of %d streams open", n, streams)
				}
				return nil
			})
			b.ReportMetric(float64(heap()-before)/streams, "heap-bytes/stream")
			for range b.N {
			}
		})
	}
}

// BenchmarkHostWatchMemory reports the heap one host serving 19 overlay networks costs (controller and
// client together, both in this process; 20 such hosts, idle streams), with one host watch stream
// carrying the 19 networks and, as the reference, with a stream per network as before it:
// go test -run - -bench HostWatchMemory ./internal/controller/
func BenchmarkHostWatchMemory(b *testing.B) {
	const hosts, networks = 20, 19
	for _, mux := range []bool{true, false} {
		b.Run(fmt.Sprintf("host-stream=%v", mux), func(b *testing.B) {
			s, _ := embeddedController(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			revs := map[string]int64{}
			for i := range networks {
				name := fmt.Sprintf("n%d", i)
				if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: name, Subnet: fmt.Sprintf("10.50.%d.0/24", i)}); err != nil {
					b.Fatal(err)
				}
				revs[name] = 0
			}
			var hs []*client.Client
			for i := range hosts {
				hs = append(hs, registerHost(b, s, fmt.Sprintf("h%d", i), fmt.Sprintf("192.168.79.%d", i+1)))
			}
			heap := func() uint64 {
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				return m.HeapAlloc
			}
			before := heap()
			var snapshots atomic.Int64
			count := func(ev api.EndpointEvent) {
				if ev.Type == api.EventSnapshot {
					snapshots.Add(1)
				}
			}
			for _, h := range hs {
				if mux {
					go func() {
						_ = h.WatchHost(ctx, revs, func(_ string, ev api.EndpointEvent) error { count(ev); return nil })
					}()
					continue
				}
				for name := range revs {
					go func() {
						_ = h.WatchEndpoints(ctx, name, 0, func(ev api.EndpointEvent) error { count(ev); return nil })
					}()
				}
			}
			testutil.Eventually(b, 60*time.Second, func() error {
				if n := snapshots.Load(); n < hosts*networks {
					return fmt.Errorf("%d of %d network snapshots", n, hosts*networks)
				}
				return nil
			})
			b.ReportMetric(float64(heap()-before)/hosts, "heap-bytes/host")
			for range b.N {
			}
		})
	}
}
