package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ovnet/ov/api"
)

// settle waits for every process of the lab to run, retries the removals that failed during the faults,
// then waits (up to chaosSettle) for the state to pass every check, and finally checks reachability.
func (c *chaos) settle(ctx context.Context) {
	c.checkProcesses(ctx)
	deadline := time.Now().Add(chaosSettle)
	for _, ct := range c.ctrs {
		for ct.Remove && !ct.Removed && time.Now().Before(deadline) {
			c.remove(ctx, ct)
			if !ct.Removed {
				sleepCtx(ctx, time.Second)
			}
		}
		if ct.Remove && !ct.Removed {
			c.fatalf("ovctl rm -f %s on %s still fails %v after the last fault was healed: %s", ct.Name, ct.Host, chaosSettle, ct.RmErr)
		}
	}
	c.event("removals retried; waiting for convergence")
	var problems []string
	var st *chaosState
	for tries := 1; ; tries++ {
		var err error
		if st, err = c.collect(ctx); err != nil {
			problems = []string{err.Error()}
		} else {
			problems = c.check(st)
		}
		if len(problems) == 0 {
			c.event("converged after %d reads", tries)
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.fatalf("%d problems remain %v after the last fault was healed (and removals retried):\n  %s",
				len(problems), chaosSettle, strings.Join(problems, "\n  "))
		}
		sleepCtx(ctx, 2*time.Second)
	}
	c.checkReach(ctx, st, time.Now().Add(30*time.Second))
}

// checkProcesses makes sure every process of the lab runs after the faults: one that is not running
// died by itself (the faults start again whatever they kill), which is a bug: it is reported, and
// started again so that the other checks can go on.
func (c *chaos) checkProcesses(ctx context.Context) {
	l := c.l
	for _, h := range l.Hosts {
		if !h.Agent.Running() {
			c.t.Errorf("chaos seed %d: the agent of %s died by itself (see %s) (%s)", c.seed, h.Name, h.Agent.Log, c.replay())
			if err := l.StartAgent(ctx, h.Name); err != nil {
				c.fatalf("start the agent of %s again: %v", h.Name, err)
			}
		}
		if h.Partitioned {
			c.fatalf("%s is still partitioned after the faults", h.Name)
		}
	}
	if !l.Controller.Running() {
		c.t.Errorf("chaos seed %d: the controller died by itself (see %s) (%s)", c.seed, l.Controller.Log, c.replay())
		if err := l.StartController(ctx); err != nil {
			c.fatalf("start the controller again: %v", err)
		}
	}
	for i, m := range l.Etcd {
		if !m.Proc.Running() {
			c.t.Errorf("chaos seed %d: etcd member %s died by itself (see %s) (%s)", c.seed, m.Name, m.Proc.Log, c.replay())
			if err := l.StartEtcd(ctx, i+1); err != nil {
				c.fatalf("start etcd member %s again: %v", m.Name, err)
			}
		}
	}
}

// chaosEP is one endpoint as an agent reports it: a container's address on a network.
type chaosEP struct {
	host, id, name, ip, netns, status string
}

// endpoints lists every container's endpoints on the chaos networks, by network.
func endpoints(st *chaosState) map[string][]chaosEP {
	out := map[string][]chaosEP{}
	for host, cs := range st.ctrs {
		for _, ct := range cs {
			for _, ep := range ct.Networks {
				out[ep.Network] = append(out[ep.Network], chaosEP{host, ct.ID, ct.Name, ep.IP, ct.NetNS, ct.State.Status})
			}
		}
	}
	for _, eps := range out {
		sort.Slice(eps, func(i, j int) bool { return eps[i].name < eps[j].name })
	}
	return out
}

// check returns every invariant the state breaks, each named so that the message says what is wrong.
func (c *chaos) check(st *chaosState) []string {
	var p []string
	p = append(p, c.checkContainers(st)...)
	p = append(p, c.checkAddresses(st)...)
	p = append(p, c.checkEtcd(st)...)
	for _, h := range c.l.Hosts {
		p = append(p, c.checkKernel(st, h.Name, h.Addr)...)
	}
	p = append(p, c.checkLeftovers(st)...)
	return p
}

// checkContainers: every container ovctl run -d reported started (and that was not removed) is
// running or has a recorded exit; no removed container is listed; nothing unknown is listed.
func (c *chaos) checkContainers(st *chaosState) []string {
	var p []string
	byName := map[string]api.Container{}
	for host, cs := range st.ctrs {
		for _, ct := range cs {
			byName[host+"/"+ct.Name] = ct
		}
	}
	planned := map[string]bool{}
	for _, ct := range c.ctrs {
		planned[ct.Host+"/"+ct.Name] = true
		rec, listed := byName[ct.Host+"/"+ct.Name]
		switch {
		case ct.Removed && listed:
			p = append(p, fmt.Sprintf("container %s on %s was removed (ovctl rm -f succeeded) but %s still lists it (%s)", ct.Name, ct.Host, ct.Host, rec.State.Status))
		case ct.Removed || !ct.Started:
		case !listed:
			p = append(p, fmt.Sprintf("container %s on %s: ovctl run -d reported it started (%.12s) but %s does not list it", ct.Name, ct.Host, ct.ID, ct.Host))
		case rec.ID != ct.ID:
			p = append(p, fmt.Sprintf("container %s on %s: ovctl run -d printed ID %.12s, ps -a shows %.12s", ct.Name, ct.Host, ct.ID, rec.ID))
		case rec.State.Status == api.StateRunning:
		case rec.State.Status == api.StateExited && !rec.State.FinishedAt.IsZero() && rec.State.Error == "":
		default:
			p = append(p, fmt.Sprintf("container %s on %s: ovctl run -d reported it started but it is %q (exit %d, error %q): neither running nor a recorded exit",
				ct.Name, ct.Host, rec.State.Status, rec.State.ExitCode, rec.State.Error))
		}
	}
	for key, ct := range byName {
		if !planned[key] {
			p = append(p, fmt.Sprintf("%s lists a container %q (%.12s) the workload never created there", strings.Split(key, "/")[0], ct.Name, ct.ID))
		}
	}
	return p
}

// checkAddresses: no address is held twice on a network, every endpoint has an address in its network.
func (c *chaos) checkAddresses(st *chaosState) []string {
	var p []string
	for network, eps := range endpoints(st) {
		n, ok := st.nets[network]
		if !ok {
			p = append(p, fmt.Sprintf("containers are on network %q, which etcd does not have", network))
			continue
		}
		subnet, _ := netip.ParsePrefix(n.Subnet)
		holders := map[string][]string{}
		for _, ep := range eps {
			if a, err := netip.ParseAddr(ep.ip); err != nil || !subnet.Contains(a) {
				p = append(p, fmt.Sprintf("container %s on %s has address %q on %s, not in its subnet %s", ep.name, ep.host, ep.ip, network, n.Subnet))
			}
			holders[ep.ip] = append(holders[ep.ip], ep.name+" on "+ep.host)
		}
		for ip, hs := range holders {
			if len(hs) > 1 {
				p = append(p, fmt.Sprintf("address %s on %s is held by %d containers: %s", ip, network, len(hs), strings.Join(hs, ", ")))
			}
		}
	}
	return p
}

// checkEtcd: etcd's endpoints and owners are exactly the agents' endpoints; its hosts are the lab's and
// its networks the workload's.
func (c *chaos) checkEtcd(st *chaosState) []string {
	var p []string
	removed := map[string]string{}
	for _, ct := range c.ctrs {
		if ct.Removed && ct.ID != "" {
			removed[ct.ID] = ct.Name
		}
	}
	listed := map[string]api.Container{}
	for _, cs := range st.ctrs {
		for _, ct := range cs {
			listed[ct.ID] = ct
		}
	}
	whose := func(id string) string {
		if name, ok := removed[id]; ok {
			return fmt.Sprintf("the removed container %s (%.12s)", name, id)
		}
		if ct, ok := listed[id]; ok {
			return fmt.Sprintf("container %s (%.12s, %s, listed with networks %v)", ct.Name, id, ct.State.Status, ct.Networks)
		}
		return fmt.Sprintf("container %.12s", id)
	}
	want := map[string]chaosEP{} // network/ip -> endpoint
	for network, eps := range endpoints(st) {
		for _, ep := range eps {
			want[network+"/"+ep.ip] = ep
		}
	}
	owners := map[string]string{} // network/host/container -> ip
	var hosts, nets []string
	for k, v := range st.etcd {
		switch {
		case strings.HasPrefix(k, "/ov/v1/endpoints/"):
			var e api.Endpoint
			if err := json.Unmarshal([]byte(v), &e); err != nil {
				p = append(p, fmt.Sprintf("etcd %s: undecodable endpoint: %v", k, err))
				continue
			}
			key := e.Network + "/" + e.IP
			if k != "/ov/v1/endpoints/"+key {
				p = append(p, fmt.Sprintf("etcd %s holds the endpoint of %s/%s", k, e.Network, e.IP))
			}
			ep, ok := want[key]
			switch {
			case !ok:
				p = append(p, fmt.Sprintf("etcd allocates %s on %s to %s on %s, which no agent reports: a leaked address", e.IP, e.Network, whose(e.Container), e.Host))
			case ep.host != e.Host || ep.id != e.Container:
				p = append(p, fmt.Sprintf("etcd allocates %s on %s to %s on %s, but %s on %s holds it", e.IP, e.Network, whose(e.Container), e.Host, ep.name, ep.host))
			}
			delete(want, key)
		case strings.HasPrefix(k, "/ov/v1/owners/"):
			owners[strings.TrimPrefix(k, "/ov/v1/owners/")] = v
		case strings.HasPrefix(k, "/ov/v1/hosts/"):
			hosts = append(hosts, strings.TrimPrefix(k, "/ov/v1/hosts/"))
		case strings.HasPrefix(k, "/ov/v1/networks/"):
			nets = append(nets, strings.TrimPrefix(k, "/ov/v1/networks/"))
		}
	}
	for key, ep := range want {
		p = append(p, fmt.Sprintf("container %s on %s holds %s (%s), which etcd does not allocate to it", ep.name, ep.host, key, ep.status))
	}
	for network, eps := range endpoints(st) {
		for _, ep := range eps {
			ok := network + "/" + ep.host + "/" + ep.id
			if ip, have := owners[ok]; !have || ip != ep.ip {
				p = append(p, fmt.Sprintf("etcd owner key of %s on %s (network %s) is %q, want %s", ep.name, ep.host, network, ip, ep.ip))
			}
			delete(owners, ok)
		}
	}
	for ok, ip := range owners {
		parts := strings.Split(ok, "/")
		p = append(p, fmt.Sprintf("etcd owner key %s (%s) names %s, which no agent reports", ok, ip, whose(parts[len(parts)-1])))
	}
	sort.Strings(hosts)
	sort.Strings(nets)
	if strings.Join(hosts, " ") != "host1 host2 host3" {
		p = append(p, fmt.Sprintf("etcd has hosts %v, want host1 host2 host3", hosts))
	}
	if strings.Join(nets, " ") != chaosNets[0].name+" "+chaosNets[1].name {
		p = append(p, fmt.Sprintf("etcd has networks %v, want %s %s", nets, chaosNets[0].name, chaosNets[1].name))
	}
	return p
}

// checkKernel: a host has the VXLAN device and gateway of exactly the networks it has containers on;
// their FDB and neighbour entries are exactly the other hosts' containers (and one all-zero FDB entry
// per other host serving the network); its iptables rules name only networks it serves and hosts that
// serve one of them; no partition rule is left; its netns directory holds only its containers'.
func (c *chaos) checkKernel(st *chaosState, host, addr string) []string {
	var p []string
	k := st.kernel[host]
	vtep := map[string]string{}
	for _, h := range c.l.Hosts {
		vtep[h.Name] = h.Addr
	}
	var wantLinks []string
	servedVTEPs := map[string]bool{}
	servedRules := map[string]bool{}
	for network, eps := range endpoints(st) {
		n := st.nets[network]
		var fdb, neigh []string
		local := false
		others := map[string]bool{}
		for _, ep := range eps {
			if ep.host == host {
				local = true
				continue
			}
			others[ep.host] = true
			fdb = append(fdb, mac(ep.ip)+" dst "+vtep[ep.host])
			neigh = append(neigh, ep.ip+" "+mac(ep.ip)+" PERMANENT")
		}
		if !local {
			continue
		}
		for h := range others {
			fdb = append(fdb, "00:00:00:00:00:00 dst "+vtep[h])
			servedVTEPs[vtep[h]] = true
		}
		wantLinks = append(wantLinks, fmt.Sprintf("ovgw-%d", n.VNI), fmt.Sprintf("ovvx-%d", n.VNI))
		servedRules[fmt.Sprintf("ovgw-%d", n.VNI)], servedRules[n.Subnet] = true, true
		sort.Strings(fdb)
		sort.Strings(neigh)
		if got := strings.Join(k.fdb[n.VNI], "\n  "); got != strings.Join(fdb, "\n  ") {
			p = append(p, fmt.Sprintf("%s: FDB of ovvx-%d (%s) is\n  %s\nwant\n  %s", host, n.VNI, network, got, strings.Join(fdb, "\n  ")))
		}
		if got := strings.Join(k.neigh[n.VNI], "\n  "); got != strings.Join(neigh, "\n  ") {
			p = append(p, fmt.Sprintf("%s: neighbours of ovvx-%d (%s) are\n  %s\nwant\n  %s", host, n.VNI, network, got, strings.Join(neigh, "\n  ")))
		}
	}
	sort.Strings(wantLinks)
	if strings.Join(k.links, " ") != strings.Join(wantLinks, " ") {
		p = append(p, fmt.Sprintf("%s: ov's links are %v, want %v", host, k.links, wantLinks))
	}
	p = append(p, checkRules(host, addr, k.rules, servedVTEPs, servedRules)...)
	mine := map[string]bool{}
	for _, ct := range st.ctrs[host] {
		mine[ct.ID] = true
	}
	for _, e := range k.netns {
		if len(e) == 64 && !mine[e] {
			p = append(p, fmt.Sprintf("%s: the network namespace of container %.12s is left in the agent's netns directory, which %s does not list", host, e, host))
		}
	}
	return p
}

// checkRules: each of ov's rules that names a VTEP, a gateway interface or a subnet names one the host
// serves; no partition rule is left.
func checkRules(host, addr string, rules []string, vteps, served map[string]bool) []string {
	var p []string
	for _, r := range rules {
		f := strings.Fields(r)
		bad := strings.Contains(r, "ovlab partition")
		for i := 0; i+1 < len(f) && !bad; i++ {
			v := f[i+1]
			switch {
			case f[i] == "-s" && strings.HasSuffix(v, "/32") && strings.Contains(r, "OV-OVERLAY-IN"):
				bad = !vteps[strings.TrimSuffix(v, "/32")]
			case (f[i] == "-i" || f[i] == "-o") && strings.HasPrefix(v, "ovgw-"):
				bad = !served[v]
			case f[i] == "-s" && strings.Contains(r, "OV-OVERLAY-NAT"):
				bad = !served[v]
			}
		}
		if bad {
			p = append(p, fmt.Sprintf("%s (%s): iptables rule left for a network or host it does not serve: %s", host, addr, r))
		}
	}
	return p
}

// checkLeftovers: no mount, cgroup or process names a container that no agent lists.
func (c *chaos) checkLeftovers(st *chaosState) []string {
	var p []string
	known := map[string]string{}
	for host, cs := range st.ctrs {
		for _, ct := range cs {
			known[ct.ID] = host
		}
	}
	names := map[string]string{}
	for _, ct := range c.ctrs {
		if ct.ID != "" {
			names[ct.ID] = ct.Name
		}
	}
	left := func(what, where string) {
		id := idIn(where)
		if id == "" || known[id] != "" {
			return
		}
		name := names[id]
		if name == "" {
			name = "(a container whose run failed)"
		}
		p = append(p, fmt.Sprintf("%s of container %s %.12s, which no agent lists, is left: %s", what, name, id, where))
	}
	for _, m := range st.mounts {
		left("mount", m)
	}
	for _, d := range st.cgroup {
		left("cgroup", d)
	}
	for pid, cmd := range st.procs {
		if strings.Contains(cmd, c.l.Config.Dir) || strings.Contains(cmd, binDir) {
			left("process "+pid, cmd)
		}
	}
	return p
}

// checkReach pings, from inside containers' network namespaces, a sample of the other running
// containers on the same network: every ordered pair of hosts of both networks, each with up to 3
// sources and 3 targets drawn from the seed. Each pair may fail until deadline (ARP and FDB settle).
func (c *chaos) checkReach(ctx context.Context, st *chaosState, deadline time.Time) {
	rng := rand.New(rand.NewPCG(uint64(c.seed), 0x9e4c))
	type pair struct{ from, to chaosEP }
	var pairs []pair
	for _, n := range chaosNets {
		byHost := map[string][]chaosEP{}
		for _, ep := range endpoints(st)[n.name] {
			if ep.status == api.StateRunning {
				byHost[ep.host] = append(byHost[ep.host], ep)
			}
		}
		for _, a := range c.l.Hosts {
			for _, b := range c.l.Hosts {
				froms, tos := sample(rng, byHost[a.Name], 3), sample(rng, byHost[b.Name], 3)
				for i, from := range froms {
					for j, to := range tos {
						if from.id != to.id && (i == j || a.Name != b.Name) {
							pairs = append(pairs, pair{from, to})
						}
					}
				}
			}
		}
	}
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	work := make(chan pair)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pr := range work {
				if err := pingUntil(ctx, pr.from, pr.to, deadline); err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	for _, pr := range pairs {
		work <- pr
	}
	close(work)
	wg.Wait()
	c.event("pinged %d pairs, %d failed", len(pairs), len(failed))
	c.t.Logf("chaos: %d pings between running containers (every host pair, both networks), %d failed", len(pairs), len(failed))
	if len(failed) > 0 {
		sort.Strings(failed)
		c.fatalf("%d of %d container pairs cannot reach each other:\n  %s", len(failed), len(pairs), strings.Join(failed, "\n  "))
	}
}

// sample draws up to n of eps.
func sample(rng *rand.Rand, eps []chaosEP, n int) []chaosEP {
	eps = append([]chaosEP(nil), eps...)
	rng.Shuffle(len(eps), func(i, j int) { eps[i], eps[j] = eps[j], eps[i] })
	return eps[:min(n, len(eps))]
}

// pingUntil pings to.ip from from's network namespace until a reply comes or deadline passes.
func pingUntil(ctx context.Context, from, to chaosEP, deadline time.Time) error {
	for {
		out, err := exec.CommandContext(ctx, "nsenter", "--net="+from.netns, "ping", "-c", "1", "-W", "1", to.ip).CombinedOutput()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s on %s (%s) cannot reach %s on %s (%s): %v: %s", from.name, from.host, from.ip, to.name, to.host, to.ip,
				err, strings.TrimSpace(lastLine(string(out))))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
