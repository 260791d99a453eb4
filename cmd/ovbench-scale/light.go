package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/errdefs"
)

// Light hosts (-sample K) put on the controller and etcd the load of a real agent without its data
// plane: they register with the join token and then use their host token, heartbeat on the agent's
// schedule (internal/driver/overlay/join.go, hostlist.go), allocate their endpoints with the calls of
// the driver's Attach (the network list, then the allocation), and hold the endpoint watch streams of
// the networks they serve, reading and discarding the bytes: no decoding, no state. A stream that is
// cut is opened again from revision 0 after 2 s (the agent's pause).

// The agent's schedule (overlay.Config defaults).
const (
	lightHeartbeat    = 2 * time.Second
	lightHostListEach = 30 * time.Second
	lightTimeout      = 60 * time.Second // the simulated hosts' RequestTimeout
	lightReopen       = 2 * time.Second  // the driver's pause before a watch is opened again
)

// Light watch modes: one stream per network served (the agents of today), or one per host carrying
// every network it serves (GET /v1/endpoints?watch=true&networks=..., the multiplexed watch).
const (
	watchPerNetwork = "network"
	watchPerHost    = "host"
)

// Bring-up orders with -sample (-bringup).
const (
	bringupWatchFirst     = "watch-first"
	bringupEndpointsFirst = "endpoints-first"
)

type lightHost struct {
	idx   int
	name  string
	addr  netip.Addr
	token string
	ctl   *client.Client // with the host token
}

// fleet is the light hosts and their counters.
type fleet struct {
	url     string
	mode    string
	watchHC []*http.Client // raw watch streams, spread over local source addresses
	hosts   []*lightHost

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	registered, allocated      atomic.Int64
	streams, opened, reopened  atomic.Int64 // streams open now; opened in total; opened again after a cut
	bytes                      atomic.Int64 // watch bytes read and discarded
	heartbeats, heartbeatFails atomic.Int64
	hostLists                  atomic.Int64
	refusedMu                  sync.Mutex
	refused                    string // the first refusal of a watch (a status other than 200)
	refusals                   atomic.Int64
}

func newFleet(ctx context.Context, ctlURL, mode string) *fleet {
	f := &fleet{url: ctlURL, mode: mode}
	f.ctx, f.cancel = context.WithCancel(ctx)
	// Loopback has about 28,000 ephemeral ports per source address, and the per-network streams of
	// 1,000 hosts are 19,000 connections: the streams come from 127.0.0.2-9.
	for i := range 8 {
		local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}
		tr := &http.Transport{
			Proxy:              nil,
			DialContext:        (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, LocalAddr: local}).DialContext,
			DisableCompression: true,
			MaxIdleConns:       16, MaxIdleConnsPerHost: 16,
			ReadBufferSize: 4 << 10,
		}
		f.watchHC = append(f.watchHC, &http.Client{Transport: tr})
	}
	return f
}

func (f *fleet) stop() {
	f.cancel()
	f.wg.Wait()
	for _, hc := range f.watchHC {
		hc.CloseIdleConnections()
	}
}

// register registers h as the agent's join does (overlay's join and register): the join token's
// registration, then with the host token the endpoint reconcile (it has none), the host list, the
// gossip keyring and the network list; then it heartbeats until the fleet stops.
func (f *fleet) register(h *lightHost) error {
	jc, err := client.New(client.Config{URL: f.url, Token: joinToken, MaxConns: 2})
	if err != nil {
		return err
	}
	me := api.Host{Name: h.name, Address: h.addr.String()}
	var reg api.Host
	err = retry(f.ctx, func(ctx context.Context) (err error) { reg, err = jc.RegisterHost(ctx, me); return err })
	if err != nil {
		return fmt.Errorf("light host %s: register: %w", h.name, err)
	}
	if reg.Token == "" {
		return fmt.Errorf("light host %s: the controller sent no host token", h.name)
	}
	h.token, h.ctl = reg.Token, jc.WithToken(reg.Token)
	steps := []func(context.Context) error{
		func(ctx context.Context) error { _, err := h.ctl.Reconcile(ctx, h.name, nil); return err },
		func(ctx context.Context) error { _, err := h.ctl.ListHosts(ctx); return err },
		func(ctx context.Context) error { _, err := h.ctl.GossipKeyring(ctx); return err },
		func(ctx context.Context) error { _, err := h.ctl.ListNetworks(ctx); return err },
	}
	for _, s := range steps {
		if err := retry(f.ctx, s); err != nil {
			return fmt.Errorf("light host %s: join: %w", h.name, err)
		}
	}
	f.registered.Add(1)
	f.wg.Add(1)
	go f.heartbeat(h)
	return nil
}

// retry calls fn (each with the agent's request timeout) until it succeeds, fails with something
// else than "unavailable" (a timeout, an overloaded controller), or the fleet stops.
func retry(ctx context.Context, fn func(context.Context) error) error {
	backoff := 200 * time.Millisecond
	for {
		rctx, cancel := context.WithTimeout(ctx, lightTimeout)
		err := fn(rctx)
		cancel()
		if err == nil || ctx.Err() != nil || !(errors.Is(err, errdefs.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// heartbeat is the agent's heartbeatUntilLost and heartbeat: every 2 s, reading the host list when
// its revision moved or the last read is 30 s old, and the keyring when its version moved.
func (f *fleet) heartbeat(h *lightHost) {
	defer f.wg.Done()
	t := time.NewTicker(lightHeartbeat)
	defer t.Stop()
	var hostsRev, keyring int64
	listed := time.Now()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(f.ctx, lightTimeout)
		hb, err := h.ctl.Heartbeat(ctx, h.name)
		f.heartbeats.Add(1)
		if err != nil {
			cancel()
			if f.ctx.Err() == nil {
				f.heartbeatFails.Add(1)
			}
			continue
		}
		if rev := hb.HostsRevision; (rev != 0 && rev != hostsRev) || time.Since(listed) >= lightHostListEach {
			hostsRev = rev
			if _, err := h.ctl.ListHosts(ctx); err == nil {
				listed = time.Now()
				f.hostLists.Add(1)
			}
		}
		if v := hb.GossipKeyringVersion; v != 0 && v != keyring {
			if _, err := h.ctl.GossipKeyring(ctx); err == nil {
				keyring = v
			}
		}
		cancel()
	}
}

// allocate is the driver's Attach as the controller sees it: the network list, then the allocation
// (the controller picks the address). Failures that say "unavailable" are retried (the allocation is
// per owner: a retry gets the same address).
func (f *fleet) allocate(h *lightHost, network, container string) error {
	if err := retry(f.ctx, func(ctx context.Context) error { _, err := h.ctl.ListNetworks(ctx); return err }); err != nil {
		return fmt.Errorf("light host %s: list networks: %w", h.name, err)
	}
	ep := api.Endpoint{Network: network, Host: h.name, Container: container}
	if err := retry(f.ctx, func(ctx context.Context) error { _, err := h.ctl.Allocate(ctx, ep); return err }); err != nil {
		return fmt.Errorf("light host %s: allocate on %s: %w", h.name, network, err)
	}
	f.allocated.Add(1)
	return nil
}

// watchNetwork holds h's stream of one network's endpoints (the route of today's agents).
func (f *fleet) watchNetwork(h *lightHost, network string) {
	f.watch(h, "/v1/networks/"+url.PathEscape(network)+"/endpoints?watch=true&revision=0")
}

// watchHost holds h's one stream of every network it serves (the multiplexed route:
// GET /v1/endpoints?watch=true&networks=NAME:REV,...), each from revision 0.
func (f *fleet) watchHost(h *lightHost, networks []string) {
	parts := make([]string, len(networks))
	for i, n := range networks {
		parts[i] = url.QueryEscape(n) + ":0"
	}
	f.watch(h, "/v1/endpoints?watch=true&networks="+strings.Join(parts, ","))
}

// watch opens path with h's host token (as the controller client sends it) and reads the stream until
// the fleet stops, opening it again from the same path (revision 0) 2 s after it is cut.
func (f *fleet) watch(h *lightHost, path string) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		hc := f.watchHC[h.idx%len(f.watchHC)]
		buf := make([]byte, 2<<10)
		for first := true; f.ctx.Err() == nil; first = false {
			if !first {
				f.reopened.Add(1)
			}
			f.watchOnce(hc, h, path, buf)
			select {
			case <-f.ctx.Done():
				return
			case <-time.After(lightReopen):
			}
		}
	}()
}

func (f *fleet) watchOnce(hc *http.Client, h *lightHost, path string, buf []byte) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, f.url+path, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := hc.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		f.refusals.Add(1)
		f.refusedMu.Lock()
		if f.refused == "" {
			f.refused = fmt.Sprintf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
		}
		f.refusedMu.Unlock()
		return
	}
	f.opened.Add(1)
	f.streams.Add(1)
	defer f.streams.Add(-1)
	for {
		n, err := resp.Body.Read(buf)
		f.bytes.Add(int64(n))
		if err != nil {
			return
		}
	}
}

func (f *fleet) firstRefusal() string {
	f.refusedMu.Lock()
	defer f.refusedMu.Unlock()
	return f.refused
}
