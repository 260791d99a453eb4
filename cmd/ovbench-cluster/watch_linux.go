package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// neighWatch records when each IPv4 neighbour entry first appeared in a network namespace, from the
// kernel's notifications (no polling): on a host, the neighbour entries of the VXLAN devices are the
// remote endpoints its agent programmed.
type neighWatch struct {
	mu    sync.Mutex
	first map[netip.Addr]time.Time
}

// watchNeigh subscribes to the neighbour notifications of the namespace at path until ctx ends.
func watchNeigh(ctx context.Context, path string) (*neighWatch, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	ch := make(chan vnl.NeighUpdate, 256)
	if err := vnl.NeighSubscribeWithOptions(ch, ctx.Done(), vnl.NeighSubscribeOptions{Namespace: &ns}); err != nil {
		return nil, fmt.Errorf("subscribe to neighbour changes in %s: %w", path, err)
	}
	w := &neighWatch{first: map[netip.Addr]time.Time{}}
	go func() {
		for u := range ch {
			now := time.Now()
			if u.Type != unix.RTM_NEWNEIGH || u.Family != unix.AF_INET {
				continue
			}
			a, ok := netip.AddrFromSlice(u.IP)
			if !ok {
				continue
			}
			w.mu.Lock()
			if _, seen := w.first[a.Unmap()]; !seen {
				w.first[a.Unmap()] = now
			}
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// seen returns when the entry for a first appeared.
func (w *neighWatch) seen(a netip.Addr) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.first[a]
	return t, ok
}
