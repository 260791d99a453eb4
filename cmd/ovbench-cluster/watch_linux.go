package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"time"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
)

// firstSeen records when each address was first reported.
type firstSeen struct {
	mu sync.Mutex
	at map[netip.Addr]time.Time
}

func newFirstSeen() *firstSeen { return &firstSeen{at: map[netip.Addr]time.Time{}} }

func (f *firstSeen) note(a netip.Addr, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.at[a.Unmap()]; !ok {
		f.at[a.Unmap()] = t
	}
}

// seen returns when a was first reported.
func (f *firstSeen) seen(a netip.Addr) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.at[a]
	return t, ok
}

// watchNeigh records when each IPv4 neighbour entry first appeared in the network namespace at path,
// from the kernel's notifications (no polling), until ctx ends. On a host, the neighbour entries of
// the VXLAN devices are the remote endpoints its agent programmed.
func watchNeigh(ctx context.Context, path string) (*firstSeen, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	ch := make(chan vnl.NeighUpdate, 256)
	if err := vnl.NeighSubscribeWithOptions(ch, ctx.Done(), vnl.NeighSubscribeOptions{Namespace: &ns}); err != nil {
		return nil, fmt.Errorf("subscribe to neighbour changes in %s: %w", path, err)
	}
	f := newFirstSeen()
	go func() {
		for u := range ch {
			now := time.Now()
			if u.Type != unix.RTM_NEWNEIGH || u.Family != unix.AF_INET {
				continue
			}
			if a, ok := netip.AddrFromSlice(u.IP); ok {
				f.note(a, now)
			}
		}
	}()
	return f, nil
}

// watchEndpoints records when each endpoint of network first arrived on a watch of the controller's
// endpoint stream, the one every agent keeps open, made from the underlay namespace at nsPath.
func watchEndpoints(ctx context.Context, nsPath, controllerURL, token, network string) (*firstSeen, error) {
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, nw, addr string) (net.Conn, error) {
		return dialIn(ctx, nsPath, nw, addr)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, controllerURL+"/v1/networks/"+network+"/endpoints?watch=1&revision=0", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("watch the endpoints of %s: %w", network, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("watch the endpoints of %s: %s", network, resp.Status)
	}
	f := newFirstSeen()
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			now := time.Now()
			var ev api.EndpointEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Type != api.EventPut || ev.Endpoint == nil {
				continue
			}
			if a, err := netip.ParseAddr(ev.Endpoint.IP); err == nil {
				f.note(a, now)
			}
		}
	}()
	return f, nil
}

// dialIn dials addr from the network namespace at nsPath: the socket is made on a thread switched
// into it, and stays there.
func dialIn(ctx context.Context, nsPath, nw, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- result{nil, err}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, nw, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
