package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/membership"
)

// layout is which networks each host is on and how many endpoints it has on each: a tenth of the
// networks (at least one) span every host, the others a tenth of the hosts each (consecutive windows
// spread evenly); a host's endpoints go round-robin over its networks, starting at a host-dependent
// one so that every network gets endpoints.
type layout struct {
	names  []string
	global []bool
	count  [][]int // count[n][h]: endpoints of host h on network n
	total  []int   // endpoints per network
	onHost [][]int // networks each host has endpoints on
}

func makeLayout(hosts, networks, perHost int) layout {
	global := max(1, networks/10)
	partial := networks - global
	span := max(1, hosts/10)
	l := layout{count: make([][]int, networks), total: make([]int, networks), onHost: make([][]int, hosts)}
	member := make([][]int, hosts)
	for n := 0; n < networks; n++ {
		l.count[n] = make([]int, hosts)
		if n < global {
			l.names = append(l.names, fmt.Sprintf("g%02d", n))
			l.global = append(l.global, true)
			for h := range hosts {
				member[h] = append(member[h], n)
			}
			continue
		}
		j := n - global
		l.names = append(l.names, fmt.Sprintf("p%03d", j))
		l.global = append(l.global, false)
		start := j * hosts / max(1, partial)
		for k := range span {
			h := (start + k) % hosts
			member[h] = append(member[h], n)
		}
	}
	for h := range hosts {
		for k := range perHost {
			n := member[h][(h+k)%len(member[h])]
			if l.count[n][h] == 0 {
				l.onHost[h] = append(l.onHost[h], n)
			}
			l.count[n][h]++
			l.total[n]++
		}
	}
	return l
}

// peers is how many neighbour entries host h should have once converged.
func (l layout) peers(h int) int {
	p := 0
	for _, n := range l.onHost[h] {
		p += l.total[n] - l.count[n][h]
	}
	return p
}

// serving lists the hosts with endpoints on network n, but except.
func (l layout) serving(n, except int) []string {
	return l.servingOf(n, except, nil)
}

// servingOf lists the hosts with endpoints on network n, but except, of those in (nil: every host).
func (l layout) servingOf(n, except int, in []bool) []string {
	var out []string
	for h, c := range l.count[n] {
		if c > 0 && h != except && (in == nil || in[h]) {
			out = append(out, hostName(h))
		}
	}
	return out
}

func subnet(n int) string { return fmt.Sprintf("10.%d.0.0/16", n+1) }

// probeIP is the static address of probe i on network n: the top of the /16, far from what the
// controller hands out from the bottom.
func probeIP(n, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(n + 1), byte(250 - i/250), byte(1 + i%250)})
}

type cluster struct {
	o      options
	w      io.Writer
	l      layout
	ctl    *child
	etcd   *etcdCluster
	admin  *client.Client
	hosts  []*simHost // the simulated hosts running the real driver: every host, or the sample
	full   []bool     // by host index: a simulated host (the others are light hosts)
	byIdx  map[int]*simHost
	fleet  *fleet // the light hosts (-sample), or nil
	light  []*lightHost
	t      *tracker
	g      *gossip
	events atomic.Int64
	ips    [][]netip.Addr // per host: its endpoints' addresses, by network order of attach
	ipNet  [][]int        // per host: the network of each address in ips

	attached, converged atomic.Int64 // the simulated hosts' endpoints attached, hosts converged
}

// servingFull lists the simulated (sampled) hosts with endpoints on network n, but except.
func (c *cluster) servingFull(n, except int) []string { return c.l.servingOf(n, except, c.full) }

func run(ctx context.Context, o options, w io.Writer) (res result, err error) {
	if err := o.validate(); err != nil {
		return res, err
	}
	start := time.Now()
	dir, cleanup, log, err := workDir(o)
	if err != nil {
		return res, err
	}
	defer cleanup()
	raiseNoFile()
	c := &cluster{o: o, w: w, l: makeLayout(o.hosts, o.networks, o.perHost), t: newTracker(), g: &gossip{}, byIdx: map[int]*simHost{}}
	res = result{Hosts: o.hosts, Networks: o.networks, PerHost: o.perHost, Endpoints: o.hosts * o.perHost, Etcd: o.etcd, Note: o.note,
		When: time.Now().UTC().Format("2006-01-02 15:04"), Load1: loadavg(), Sample: o.sample}
	sampled := make([]int, o.hosts)
	for i := range sampled {
		sampled[i] = i
	}
	if o.sample > 0 {
		if sampled, err = chooseSample(c.l, o.sample); err != nil {
			return res, err
		}
		res.LightWatch, res.Bringup, res.SampledFigures = o.lightWatch, o.bringup, sampledFigures
		say(w, "sampled mode: %d simulated hosts (%s), %d light hosts (light watch: one stream per %s)", len(sampled), sampleNames(sampled), o.hosts-len(sampled), o.lightWatch)
	}
	c.full = make([]bool, o.hosts)
	for _, i := range sampled {
		c.full[i] = true
	}
	var etcd []string
	if o.etcd == "external" {
		if c.etcd, err = startEtcdCluster(dir, 3); err != nil {
			return res, err
		}
		defer c.etcd.stop()
		etcd = c.etcd.endpoints
	}
	if c.ctl, err = startChild(dir, etcd); err != nil {
		return res, err
	}
	defer c.ctl.stop()
	var atStop string // the status when run returned, before the hosts were stopped
	defer func() {    // stopped (an error, or a signal: -timeout, Ctrl-C): where it stood, for the record
		if err != nil {
			if atStop == "" { // before any host started
				atStop = c.status(start)
			}
			res.Stopped = fmt.Sprintf("%v; at the stop: %s", err, atStop)
			ps := c.ctl.proc()
			res.ControllerCPU, res.ControllerRSS = round(ps.cpu, 2), round(ps.hwmMB, 1)
			res.LoadEnd = loadavg()
			if cs, serr := c.ctl.stats(); serr == nil {
				res.EtcdDBMB, res.EtcdKeys, res.WatchesOpen = round(float64(cs.DBBytes)/(1<<20), 2), cs.Keys, cs.WatchesOpen
			}
		}
	}()
	if c.admin, err = client.New(client.Config{URL: c.ctl.URL, Token: adminToken}); err != nil {
		return res, err
	}
	for n, name := range c.l.names {
		if _, err := c.admin.CreateNetwork(ctx, api.Network{Name: name, Driver: api.DriverOverlay, Subnet: subnet(n)}); err != nil {
			return res, fmt.Errorf("create network %s: %w", name, err)
		}
	}
	for _, i := range sampled {
		h, err := newHost(i, dir, c.ctl.URL, c.t, c.g, &c.events, log)
		if err != nil {
			return res, fmt.Errorf("simulated host %d: %w", i, err)
		}
		c.hosts = append(c.hosts, h)
		c.byIdx[i] = h
	}
	if o.sample > 0 {
		c.fleet = newFleet(ctx, c.ctl.URL, o.lightWatch)
		for i := range o.hosts {
			if !c.full[i] {
				c.light = append(c.light, &lightHost{idx: i, name: hostName(i), addr: hostAddr(i)})
			}
		}
		c.fleet.hosts = c.light
	}
	defer c.stopAll()
	defer func() {
		if err != nil {
			atStop = c.status(start)
		}
	}()
	defer c.progress(start)()
	if err := c.converge(ctx, &res); err != nil {
		return res, err
	}
	c.census(ctx, &res)
	if err := c.probe(ctx, &res); err != nil {
		return res, err
	}
	ps := c.ctl.proc()
	res.ControllerCPU, res.ControllerRSS = round(ps.cpu, 2), round(ps.hwmMB, 1)
	if c.etcd != nil {
		es := c.etcd.stats()
		res.EtcdCPU, res.EtcdRSS = round(es.cpu, 2), round(es.hwmMB, 1)
	}
	if cs, err := c.ctl.stats(); err == nil {
		res.EtcdDBMB, res.EtcdKeys = round(float64(cs.DBBytes)/(1<<20), 2), cs.Keys
	}
	if err := c.deadHost(ctx, &res); err != nil {
		return res, err
	}
	c.stopAll()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	secs, cpu, perPeer, event, err := programPeers(10000)
	if err != nil {
		return res, err
	}
	res.Program10k, res.BytesPerPeer, res.Event10kMS = round(secs, 3), math.Round(perPeer), round(event*1000, 1)
	res.Program10kCPU = round(cpu, 2)
	res.HostMemKB = round(perPeer*res.PeersPerHost/1024, 0)
	res.LoadEnd = loadavg()
	say(w, "done: load average %s at the start, %s at the end", res.Load1, res.LoadEnd)
	return res, nil
}

func (c *cluster) stopAll() {
	if c.fleet != nil {
		c.fleet.stop()
	}
	var wg sync.WaitGroup
	for _, h := range c.hosts {
		wg.Add(1)
		go func() { defer wg.Done(); h.stop() }()
	}
	wg.Wait()
}

// attach connects a simulated container through the driver's Attach (the agent's path for `ovctl
// run --network`): the controller allocates its address, the host programs it. It retries while the
// host has not joined yet.
func (c *cluster) attach(ctx context.Context, h *simHost, network, id string, ip netip.Addr) (netip.Addr, error) {
	path := "/c/" + id
	h.nl.Fake.AddNamespace(path)
	req := driver.AttachRequest{Network: network, Container: id, Name: id, Netns: path}
	if ip.IsValid() {
		req.IP = ip.String()
	}
	for {
		ep, err := h.drv.Attach(ctx, req)
		if err == nil {
			return netip.ParseAddr(ep.IP)
		}
		if !errors.Is(err, errdefs.ErrUnavailable) || ctx.Err() != nil {
			return netip.Addr{}, fmt.Errorf("host %s: attach %s to %s: %w", h.name, id, network, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// converge starts every host, creates every endpoint (16 simulated hosts at a time; with -sample the
// light hosts register 32 at a time and allocate 64 at a time, after the simulated hosts) and waits
// until every simulated host's fake kernel holds one neighbour entry per remote endpoint of the
// networks it serves.
func (c *cluster) converge(ctx context.Context, res *result) error {
	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	t0 := time.Now()
	cpu0, _ := readProc(os.Getpid())
	all := 0
	for i := range c.o.hosts {
		all += c.l.peers(i)
	}
	res.PeersPerHost = round(float64(all)/float64(c.o.hosts), 0)
	for _, h := range c.hosts {
		h.start(ctx)
	}
	c.ips, c.ipNet = make([][]netip.Addr, c.o.hosts), make([][]int, c.o.hosts)
	if c.fleet != nil {
		if err := pool(32, len(c.light), func(k int) error { return c.fleet.register(c.light[k]) }); err != nil {
			return err
		}
		say(c.w, "%.0f s: %d light hosts registered", time.Since(t0).Seconds(), len(c.light))
	}
	if err := c.createAll(ctx, t0); err != nil {
		return err
	}
	res.CreateS = round(time.Since(t0).Seconds(), 2)
	say(c.w, "%d hosts registered and created %d endpoints in %.1f s; waiting for every simulated host's kernel to hold every peer", c.o.hosts, res.Endpoints, res.CreateS)
	total := 0
	want := make([]int, len(c.hosts))
	for k, h := range c.hosts {
		want[k] = c.l.peers(h.idx)
		total += want[k]
	}
	left := map[int]bool{}
	for k := range c.hosts {
		left[k] = true
	}
	deadline := time.Now().Add(10*time.Minute + time.Duration(total)*time.Millisecond)
	said := time.Now()
	for len(left) > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(said) > 30*time.Second {
			said = time.Now()
			say(c.w, "%.0f s: %d simulated hosts not converged yet (load %s)", time.Since(t0).Seconds(), len(left), loadavg())
		}
		for k := range left {
			if c.hosts[k].neighbours() == want[k] {
				delete(left, k)
				c.converged.Add(1)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var ex []string
			for k := range left {
				ex = append(ex, fmt.Sprintf("%s has %d of %d", c.hosts[k].name, c.hosts[k].neighbours(), want[k]))
				if len(ex) == 3 {
					break
				}
			}
			return fmt.Errorf("%d hosts did not converge (%s)", len(left), strings.Join(ex, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.ConvergeS = round(time.Since(t0).Seconds(), 2)
	cpu1, _ := readProc(os.Getpid())
	res.SimCPU = round(cpu1.cpu-cpu0.cpu, 1)
	var ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	res.SimHeapMB = round(float64(ms1.HeapAlloc)/(1<<20), 0)
	say(c.w, "converged in %.1f s: %.0f peers per host on average (simulated hosts: %.1f CPU s, heap %.0f MiB; load %s)", res.ConvergeS, res.PeersPerHost, res.SimCPU, res.SimHeapMB, loadavg())
	return c.lightStreams(res)
}

// lightStreams checks that the light hosts hold their watch streams and records the controller's
// count of open streams.
func (c *cluster) lightStreams(res *result) error {
	if cs, err := c.ctl.stats(); err == nil {
		res.WatchesOpen = cs.WatchesOpen
	}
	if c.fleet == nil {
		return nil
	}
	want := int64(len(c.light))
	if c.o.lightWatch == watchPerNetwork {
		want = 0
		for _, h := range c.light {
			want += int64(len(c.l.onHost[h.idx]))
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for c.fleet.streams.Load() < want && time.Now().Before(deadline) && c.fleet.refusals.Load() == 0 {
		time.Sleep(200 * time.Millisecond)
	}
	res.LightStreams = c.fleet.streams.Load()
	if r := c.fleet.firstRefusal(); r != "" {
		return fmt.Errorf("the controller refused %d light watch streams (%d of %d open); the first: %s; -light-watch host needs a controller with the multiplexed watch route, else use -light-watch network", c.fleet.refusals.Load(), res.LightStreams, want, r)
	}
	if res.LightStreams < want {
		return fmt.Errorf("the light hosts hold %d watch streams, want %d", res.LightStreams, want)
	}
	if cs, err := c.ctl.stats(); err == nil {
		res.WatchesOpen = cs.WatchesOpen
	}
	say(c.w, "light hosts hold %d watch streams; the controller has %d open", res.LightStreams, res.WatchesOpen)
	return nil
}

// census asks the controller, as an admin, how many hosts it has registered (and alive: heartbeating)
// and how many endpoints it stores: with -sample, what shows that the light hosts did their part.
func (c *cluster) census(ctx context.Context, res *result) {
	if hosts, err := c.admin.ListHosts(ctx); err == nil {
		res.HostsRegistered = len(hosts)
		for _, h := range hosts {
			if h.State == api.HostAlive {
				res.HostsAlive++
			}
		}
	}
	for _, name := range c.l.names {
		if eps, _, err := c.admin.ListEndpoints(ctx, name); err == nil {
			res.EndpointsStored += len(eps)
		}
	}
	say(c.w, "the controller has %d hosts registered (%d alive) and %d endpoints", res.HostsRegistered, res.HostsAlive, res.EndpointsStored)
}

// pool runs fn(0..n-1) on workers goroutines and returns the first error (the others still run).
func pool(workers, n int, fn func(k int) error) error {
	work := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range min(workers, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				errs <- fn(k)
			}
		}()
	}
	for k := range n {
		work <- k
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// createAll creates every endpoint: the simulated hosts attach theirs (16 hosts at a time) and the light
// hosts allocate theirs (64 at a time), in the order -bringup says.
func (c *cluster) createAll(ctx context.Context, t0 time.Time) error {
	simulated := func() error {
		return pool(16, len(c.hosts), func(k int) error { return c.createHost(ctx, c.hosts[k].idx) })
	}
	if c.fleet == nil {
		return simulated()
	}
	if c.o.bringup == bringupEndpointsFirst {
		if err := pool(64, len(c.light), func(k int) error { return c.allocateLightOnly(k, false) }); err != nil {
			return err
		}
		say(c.w, "%.0f s: the light hosts allocated their endpoints; they open their watches", time.Since(t0).Seconds())
		for k := range c.light {
			c.watchLight(k)
		}
		if err := simulated(); err != nil {
			return err
		}
		say(c.w, "%.0f s: the %d simulated hosts attached their %d endpoints", time.Since(t0).Seconds(), len(c.hosts), c.attached.Load())
		return nil
	}
	if err := simulated(); err != nil {
		return err
	}
	say(c.w, "%.0f s: the %d simulated hosts attached their %d endpoints; the light hosts allocate theirs", time.Since(t0).Seconds(), len(c.hosts), c.attached.Load())
	return pool(64, len(c.light), c.allocateLight)
}

// allocateLight allocates the endpoints of the k-th light host as its driver would, opening the
// watch of each network after its first allocation there (the driver's Attach), or with -light-watch
// host one stream of all its networks once they are allocated.
func (c *cluster) allocateLight(k int) error { return c.allocateLightOnly(k, true) }

// allocateLightOnly allocates the endpoints of the k-th light host; with watch, it opens their watches
// as allocateLight says.
func (c *cluster) allocateLightOnly(k int, watch bool) error {
	h := c.light[k]
	i := 0
	for _, n := range c.l.onHost[h.idx] {
		name := c.l.names[n]
		for j := range c.l.count[n][h.idx] {
			if err := c.fleet.allocate(h, name, fmt.Sprintf("%s-c%03d", h.name, i)); err != nil {
				return err
			}
			i++
			if watch && j == 0 && c.o.lightWatch == watchPerNetwork {
				c.fleet.watchNetwork(h, name)
			}
		}
	}
	if watch && c.o.lightWatch == watchPerHost {
		c.watchLight(k)
	}
	return nil
}

// watchLight opens the watches of the k-th light host: one stream per host, or one per network.
func (c *cluster) watchLight(k int) {
	h := c.light[k]
	var names []string
	for _, n := range c.l.onHost[h.idx] {
		names = append(names, c.l.names[n])
	}
	if c.o.lightWatch == watchPerHost {
		c.fleet.watchHost(h, names)
		return
	}
	for _, name := range names {
		c.fleet.watchNetwork(h, name)
	}
}

func (c *cluster) createHost(ctx context.Context, i int) error {
	h := c.byIdx[i]
	k := 0
	for _, n := range c.l.onHost[i] {
		for range c.l.count[n][i] {
			ip, err := c.attach(ctx, h, c.l.names[n], fmt.Sprintf("%s-c%03d", h.name, k), netip.Addr{})
			if err != nil {
				return err
			}
			c.ips[i] = append(c.ips[i], ip)
			c.ipNet[i] = append(c.ipNet[i], n)
			c.attached.Add(1)
			k++
		}
	}
	return nil
}

// probe adds o.probes single endpoints one after another (alternately on a network spanning every
// host and on one spanning a tenth) and removes each again, timing each until every other host serving
// the network has set (deleted) its neighbour entry.
func (c *cluster) probe(ctx context.Context, res *result) error {
	var adds, dels []time.Duration
	var events int64
	// Networks with endpoints on two hosts at least: those spanning every host, and the others.
	var global, partial []int
	for n := range c.l.names {
		if len(c.servingFull(n, -1)) < 2 {
			continue
		}
		if c.l.global[n] {
			global = append(global, n)
		} else {
			partial = append(partial, n)
		}
	}
	if len(global)+len(partial) == 0 {
		return fmt.Errorf("no network has endpoints on two simulated hosts; give more -endpoints-per-host (or a larger -sample)")
	}
	var ctl0 childStats
	if c.fleet != nil {
		ctl0, _ = c.ctl.stats()
	}
	for i := range c.o.probes {
		var n int
		switch {
		case len(partial) == 0 || (i%2 == 0 && len(global) > 0):
			n = global[(i/2)%len(global)]
		default:
			n = partial[(i/2)%len(partial)]
		}
		servers := c.servingFull(n, -1)
		hi := (i * 7919) % len(servers)
		var h *simHost
		for _, s := range c.hosts {
			if s.name == servers[hi] {
				h = s
			}
		}
		ip := probeIP(n, i)
		others := c.servingFull(n, h.idx)
		id := fmt.Sprintf("probe-%03d", i)
		p := c.t.expect(true, ip, others)
		e0 := c.events.Load()
		t0 := time.Now()
		if _, err := c.attach(ctx, h, c.l.names[n], id, ip); err != nil {
			return err
		}
		if err := wait(p, 2*time.Minute); err != nil {
			return fmt.Errorf("probe %d (%s on %s): %d hosts never set its neighbour entry: %w", i, ip, c.l.names[n], len(p.want), err)
		}
		adds = append(adds, p.last.Sub(t0))
		time.Sleep(50 * time.Millisecond) // let the last host's event arrive before counting
		events += c.events.Load() - e0
		q := c.t.expect(false, ip, others)
		t1 := time.Now()
		if err := h.drv.Detach(ctx, c.l.names[n], id); err != nil {
			return err
		}
		if err := wait(q, 2*time.Minute); err != nil {
			return fmt.Errorf("probe %d removal: %d hosts kept its neighbour entry: %w", i, len(q.want), err)
		}
		dels = append(dels, q.last.Sub(t1))
	}
	res.AddP50, res.AddP99, res.AddMax = ms(pct(adds, 50)), ms(pct(adds, 99)), ms(slices.Max(adds))
	res.RemoveP50, res.RemoveP99, res.RemoveMax = ms(pct(dels, 50)), ms(pct(dels, 99)), ms(slices.Max(dels))
	res.EventsPerEndpoint = round(float64(events)/float64(len(adds)), 1)
	if c.fleet != nil { // the light hosts count nothing: the controller's count of put events it sent
		time.Sleep(time.Second)
		if ctl1, err := c.ctl.stats(); err == nil {
			res.EventsPerEndpoint = round((ctl1.EventsPut-ctl0.EventsPut)/float64(len(adds)), 1)
		}
	}
	say(c.w, "%d single endpoints: add p50 %.0f ms p99 %.0f ms; remove p50 %.0f ms p99 %.0f ms; %.1f watch events per new endpoint",
		len(adds), res.AddP50, res.AddP99, res.RemoveP50, res.RemoveP99, res.EventsPerEndpoint)
	return nil
}

func wait(p *pending, d time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(d):
		return fmt.Errorf("timed out after %v", d)
	}
}

// deadHost stops one host's agent and makes the simulated gossip call it dead on every host at once;
// it measures the time until every other host serving one of its networks has deleted the
// neighbour entry of each of its endpoints. Real memberlist first takes its detection time: the
// bound for this cluster size is added (gossipBound).
func (c *cluster) deadHost(ctx context.Context, res *result) error {
	x := c.hosts[len(c.hosts)/2] // simulated hosts only: light hosts have no driver to stop
	for off := range c.hosts {   // a host with an endpoint on a network another host serves
		h := c.hosts[(len(c.hosts)/2+off)%len(c.hosts)]
		if slices.ContainsFunc(c.ipNet[h.idx], func(n int) bool { return len(c.servingFull(n, h.idx)) > 0 }) {
			x = h
			break
		}
	}
	x.stop()
	var ps []*pending
	for k, ip := range c.ips[x.idx] {
		ps = append(ps, c.t.expect(false, ip, c.servingFull(c.ipNet[x.idx][k], x.idx)))
	}
	t0 := time.Now()
	c.g.kill(x.name)
	var last time.Time
	for _, p := range ps {
		if err := wait(p, 2*time.Minute); err != nil {
			return fmt.Errorf("dead host %s: %d hosts kept its entries: %w", x.name, len(p.want), err)
		}
		if p.last.After(last) {
			last = p.last
		}
	}
	res.DeadWithdrawS = round(last.Sub(t0).Seconds(), 3)
	res.GossipBoundS = round(gossipBound(c.o.hosts).Seconds(), 2)
	res.DeadTotalS = round(res.DeadWithdrawS+res.GossipBoundS, 2)
	say(c.w, "dead host %s: withdrawn everywhere %.3f s after gossip's verdict; memberlist's detection bound at %d hosts %.2f s", x.name, res.DeadWithdrawS, c.o.hosts, res.GossipBoundS)
	return nil
}

// gossipBound is how long memberlist, as the agent configures it (membership.DefaultConfig and
// membership.Start), takes from a host's death until every member believes it: the dead host is
// probed within about one probe interval (n-1 members probe one member each per interval), the probe
// times out, a second member's probe confirms the suspicion within about another interval (Lifeguard
// needs SuspicionMult-2 = 1 confirmation to shorten the suspicion to its minimum), the host is suspect
// for that minimum (SuspicionMult * log10(n) * ProbeInterval), the dead message reaches every member in
// about log_GossipNodes(n) gossip rounds (membership.Start sets a 100 ms GossipInterval), and each
// member then verifies with a direct probe (VerifyTimeout) and waits DataplaneGrace for the host's
// kernel to stay silent.
func gossipBound(n int) time.Duration {
	cfg := membership.DefaultConfig("bench", netip.MustParseAddr("127.0.0.1"))
	const gossipInterval = 100 * time.Millisecond // membership.Start
	suspicion := time.Duration(float64(cfg.SuspicionMult) * math.Max(1, math.Log10(float64(n))) * float64(cfg.ProbeInterval))
	rounds := math.Ceil(math.Log(float64(n)) / math.Log(float64(memberlist.DefaultLANConfig().GossipNodes)))
	return 2*cfg.ProbeInterval + cfg.ProbeTimeout + suspicion + time.Duration(rounds)*gossipInterval + cfg.VerifyTimeout + cfg.DataplaneGrace
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 1) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
