package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// convergence holds the figures of the convergence runs.
type convergence struct {
	run    []time.Duration // `ovctl run -d` on host1, start to return
	event  []time.Duration // run started -> the controller's watch stream delivered the new endpoint
	neigh  []time.Duration // run started -> host2's kernel has the neighbour entry of the new address
	agent  []time.Duration // event delivered -> host2's kernel has the entry: host2's agent and kernel
	local0 []time.Duration // run started -> reached from host1
	remot0 []time.Duration // run started -> reached from host2
	local  []time.Duration // run returned -> reached from host1 (same host)
	remote []time.Duration // run returned -> reached from host2 (other host)
	lag    []time.Duration // reached from host1 -> reached from host2: what the overlay adds
}

// reachTimeout bounds one probe: a container still unreachable after it is a failure, not a figure.
const reachTimeout = 30 * time.Second

// convergence starts a prober container on host1 and one on host2, then, runs times, starts a new
// container on host1 with `ovctl run -d` while both probe its address, and removes it again.
func (b *bench) convergence(ctx context.Context, runs int) (*convergence, error) {
	near, err := b.start(ctx, "host1", "near")
	if err != nil {
		return nil, err
	}
	far, err := b.start(ctx, "host2", "far")
	if err != nil {
		return nil, err
	}
	for _, c := range []container{near, far} {
		if err := fastARP(c); err != nil {
			return nil, err
		}
	}
	// The mesh works before the first run: host2 reaches host1's prober.
	if _, err := b.probe(ctx, far, near.ip); err != nil {
		return nil, fmt.Errorf("container far on host2 does not reach near on host1 (%s): %w", near.ip, err)
	}
	h2, err := b.lab.Host("host2")
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kernel, err := watchNeigh(wctx, "/run/netns/"+h2.Netns)
	if err != nil {
		return nil, err
	}
	stream, err := watchEndpoints(wctx, "/run/netns/"+b.lab.UnderlayNetns, b.lab.ControllerURL, b.lab.AdminToken, b.network)
	if err != nil {
		return nil, err
	}
	base := netip.MustParseAddr("10.81.0.100")
	res := &convergence{}
	for i := -1; i < runs; i++ { // run -1 warms up (page cache, first reconcile of each kind); not counted
		ip := base
		for range i + 1 {
			ip = ip.Next()
		}
		name := fmt.Sprintf("new%d", i+1)
		t0, run, local, remote, err := b.convergeOnce(ctx, near, far, name, ip)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		at, ok := kernel.seen(ip)
		if !ok {
			return nil, fmt.Errorf("run %d: host2 reached %s but the kernel reported no neighbour entry for it in host2's namespace", i+1, ip)
		}
		evAt, ok := stream.seen(ip)
		if !ok {
			return nil, fmt.Errorf("run %d: host2 reached %s but the controller's watch stream did not deliver its endpoint", i+1, ip)
		}
		neigh, event := at.Sub(t0), evAt.Sub(t0)
		fmt.Fprintf(os.Stderr, "convergence run %2d: from the start of ovctl run -d: watch event %4.0f ms, host2 programmed %4.0f ms, returned %4.0f ms, reached from host1 %4.0f ms, from host2 %4.0f ms\n",
			i+1, ms(event), ms(neigh), ms(run), ms(run+local), ms(run+remote))
		if i >= 0 {
			res.run, res.local, res.remote = append(res.run, run), append(res.local, local), append(res.remote, remote)
			res.lag = append(res.lag, remote-local)
			res.neigh, res.local0, res.remot0 = append(res.neigh, neigh), append(res.local0, run+local), append(res.remot0, run+remote)
			res.event, res.agent = append(res.event, event), append(res.agent, neigh-event)
		}
		if _, err := b.ctl(ctx, "host1", "rm", "-f", name); err != nil {
			return nil, err
		}
		// Let the removal reach every host before the next run, so runs do not overlap.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return res, nil
}

// probe waits until container c reaches ip and returns when it did.
func (b *bench) probe(ctx context.Context, c container, ip netip.Addr) (time.Time, error) {
	p, err := newProber(c.netns, ip)
	if err != nil {
		return time.Time{}, err
	}
	defer p.Close()
	return p.reach(ctx, time.Now().Add(reachTimeout))
}

// convergeOnce starts container name at ip on host1 while near (host1) and far (host2) probe ip; it
// returns when `ovctl run -d` started, how long it took and when each prober first reached ip,
// relative to its return.
func (b *bench) convergeOnce(ctx context.Context, near, far container, name string, ip netip.Addr) (start time.Time, run, local, remote time.Duration, err error) {
	type hit struct {
		at  time.Time
		err error
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var hits [2]chan hit
	for i, c := range []container{near, far} {
		p, err := newProber(c.netns, ip)
		if err != nil {
			return time.Time{}, 0, 0, 0, err
		}
		defer p.Close()
		hits[i] = make(chan hit, 1)
		go func() {
			at, err := p.reach(pctx, time.Now().Add(reachTimeout))
			hits[i] <- hit{at, err}
		}()
	}
	t0 := time.Now()
	_, err = b.ctl(ctx, "host1", "run", "-d", "--name", name, "--network", b.network, "--ip", ip.String(), "busybox", "sleep", "1000000")
	t1 := time.Now()
	if err != nil {
		return time.Time{}, 0, 0, 0, err
	}
	var at [2]time.Time
	for i, c := range []container{near, far} {
		h := <-hits[i]
		if h.err != nil {
			return time.Time{}, 0, 0, 0, fmt.Errorf("container %s on %s did not reach the new container %s (%s) within %v: %w", c.name, c.host, name, ip, reachTimeout, h.err)
		}
		at[i] = h.at
	}
	return t0, t1.Sub(t0), at[0].Sub(t1), at[1].Sub(t1), nil
}

// goalP99 is the goal for the p99 of the convergence to another host.
const goalP99 = 250 * time.Millisecond

func (c *convergence) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Convergence: a new container reached from another host\n\n")
	fmt.Fprintf(&b, "%d runs (after one warm-up run). Each run starts a busybox container on host1 with `ovctl run -d --ip ADDR` (a new address each run) while two long-running containers probe ADDR, "+
		"one on host1 (same host: local bridge, no controller involved) and one on host2 (over the overlay: controller watch, host2's agent, its FDB and neighbour entries); "+
		"then removes it. A probe is a UDP datagram to a closed port every millisecond from the prober's network namespace, resolved by ARP like any client (retransmit time cut to %s ms); "+
		"the new container's kernel answers with ICMP port unreachable, which needs no process in it. "+
		"When host2's kernel got the new address's neighbour entry comes from its netlink notifications; when the controller streamed the new endpoint, from a watch the benchmark keeps open "+
		"from the underlay namespace like the agents' own (so the watch-to-kernel figure is host2's agent and kernel, give or take the scheduling of two readers of the same stream). "+
		"Convergence is counted from `ovctl run -d` returning, so it is negative when the container was reached before: the agent allocates the address (and the controller tells the other hosts) "+
		"while it sets up the container's network, before it starts the container and answers. Percentiles by nearest rank (with %d runs, p99 is the %s).\n\n",
		len(c.run), arpRetransMS, len(c.run), p99Word(len(c.run)))
	fmt.Fprintf(&b, "| measurement | counted from | p50 (ms) | p99 (ms) | max (ms) |\n|---|---|---|---|---|\n")
	for _, r := range []struct {
		name, from string
		d          []time.Duration
	}{
		{"`ovctl run -d` on host1 returned (reference)", "its start", c.run},
		{"the controller's watch stream delivered the new endpoint (to a watcher beside the agents')", "`ovctl run -d` start", c.event},
		{"host2's agent programmed the new address (neighbour entry in host2's kernel)", "`ovctl run -d` start", c.neigh},
		{"host2's agent and kernel: from the watch event to the neighbour entry", "watch event", c.agent},
		{"reached from host1, same host (reference)", "`ovctl run -d` start", c.local0},
		{"reached from host2, other host", "`ovctl run -d` start", c.remot0},
		{"reached from host2 minus reached from host1, per run (what the overlay adds)", "", c.lag},
		{"reached from host1, same host (reference)", "`ovctl run -d` return", c.local},
		{"**reached from host2, other host (convergence)**", "`ovctl run -d` return", c.remote},
	} {
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %.0f |\n", r.name, r.from, ms(pct(r.d, 50)), ms(pct(r.d, 99)), ms(slices.Max(r.d)))
	}
	verdict := "met"
	if pct(c.remote, 99) >= goalP99 {
		verdict = "NOT met"
	}
	fmt.Fprintf(&b, "\nGoal: p99 convergence to another host under %.0f ms: %s (p99 %.0f ms).\n", ms(goalP99), verdict, ms(pct(c.remote, 99)))
	return b.String()
}

func p99Word(n int) string {
	if n <= 100 {
		return "maximum"
	}
	return fmt.Sprintf("%d-th of %d", (99*n+99)/100, n)
}

// pct returns the q-th percentile of ds by nearest rank.
func pct(ds []time.Duration, q int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (q*len(s) + 99) / 100 // ceil(q/100 * n)
	return s[max(rank, 1)-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
