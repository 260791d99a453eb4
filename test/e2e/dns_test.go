package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
)

// TestDNSNamesAcrossHosts: `client` on host2 finds `web` on host1 by name (busybox nslookup, ping and
// wget by name), as web, web.NETWORK, its short ID and its --network-alias; a PTR query for web's
// address gives web back; a container on another network gets NXDOMAIN for web until it is connected
// to web's network (with --alias, which then resolves too); `ovctl inspect` shows the aliases;
// containers of a user-defined bridge network find each other as well.
func TestDNSNamesAcrossHosts(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "dnsnet", "--subnet", "10.91.0.0/24")
	networkOn(t, l, "dnsother", "--subnet", "10.92.0.0/24")
	web := dnsRun(t, l, "host1", "web", "dnsnet", []string{"--network-alias", "www", "--network-alias", "front"}, "busybox", "httpd", "-f", "-p", "80", "-h", "/var/www")
	client := dnsRun(t, l, "host2", "client", "dnsnet", nil, "busybox", sleeper...)
	other := dnsRun(t, l, "host3", "other", "dnsother", nil, "busybox", sleeper...)

	for _, name := range []string{"web", "WEB", "web.dnsnet", "www", "front", "www.dnsnet", web.ID[:12]} {
		testutil.Eventually(t, 10*time.Second, func() error { return expectA(client, name, web.IP) })
	}
	// over TCP too; a short TTL (seconds, not Docker's 600); AAAA of a known IPv4-only name is "no data"
	// (NOERROR, nothing), not NXDOMAIN, which would fail glibc's A+AAAA lookups
	r, err := ask(client.NetNS, "tcp", "web", dns.TypeA, false)
	if err != nil || !equal(aRecords(r.Msg), []string{web.IP}) {
		t.Fatalf("web over TCP from client: %v %v", err, r.Msg)
	}
	if ttl := r.Msg.Answer[0].Header().Ttl; ttl == 0 || ttl > 30 {
		t.Fatalf("web's A record has a TTL of %d s, want 1 to 30", ttl)
	}
	if r, err = ask(client.NetNS, "udp", "web", dns.TypeAAAA, false); err != nil || r.Msg.Rcode != dns.RcodeSuccess || len(r.Msg.Answer) != 0 {
		t.Fatalf("AAAA web from client: %v %v, want NOERROR with no answer", err, r.Msg)
	}
	out, err := execIn(l, client, "nslookup", "web")
	if err != nil || !strings.Contains(out, web.IP) {
		t.Fatalf("nslookup web in client: %v\n%s", err, out)
	}
	if err := ping(l, client, "web"); err != nil {
		t.Fatal(err)
	}
	out, err = execIn(l, client, "wget", "-q", "-O", "-", "http://web/")
	if err != nil || !strings.Contains(out, "hello from ov") {
		t.Fatalf("client on host2 fetching http://web/: %v %q", err, out)
	}

	// PTR: web's address gives web back (web. or web.dnsnet.)
	rev, err := dns.ReverseAddr(web.IP)
	if err != nil {
		t.Fatal(err)
	}
	r, err = ask(client.NetNS, "udp", rev, dns.TypePTR, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Msg.Answer) == 0 {
		t.Fatalf("PTR %s from client: %s with no answer", rev, dns.RcodeToString[r.Msg.Rcode])
	}
	ptr, ok := r.Msg.Answer[0].(*dns.PTR)
	if !ok || !strings.HasPrefix(strings.ToLower(ptr.Ptr), "web.") {
		t.Fatalf("PTR %s from client: %v, want web", rev, r.Msg.Answer)
	}

	// isolation: other (network dnsother) gets NXDOMAIN for web's single-label names (answered on the
	// host); web.dnsnet, a name of a network other does not share, is not answered from the table (it
	// is forwarded, as Docker does, and the lab's hosts have no reachable upstream)
	for _, name := range []string{"web", "www", web.ID[:12]} {
		if err := expectNX(other, name); err != nil {
			t.Fatal(err)
		}
	}
	if rcode, got, err := lookupA(other, "web.dnsnet"); err != nil || len(got) > 0 {
		t.Fatalf("other on dnsother asking for web.dnsnet: %s %v %v, want no address", rcode, got, err)
	}
	// connected to dnsnet with an alias, other finds web, and client finds other by the alias
	ctl(t, l, "host3", "network", "connect", "--alias", "db", "dnsnet", "other")
	otherIP := endpointIP(t, l, "host3", "other", "dnsnet")
	testutil.Eventually(t, 10*time.Second, func() error { return expectA(other, "web", web.IP) })
	testutil.Eventually(t, 10*time.Second, func() error { return expectA(client, "db", otherIP) })
	if err := expectA(client, "other", otherIP); err != nil {
		t.Fatal(err)
	}

	// ovctl inspect shows the aliases per network
	for _, c := range []struct {
		host, name string
		want       map[string][]string
	}{
		{"host1", "web", map[string][]string{"dnsnet": {"www", "front"}}},
		{"host3", "other", map[string][]string{"dnsnet": {"db"}, "dnsother": nil}},
	} {
		for _, ep := range inspect(t, l, c.host, c.name).Networks {
			if !sameSet(ep.Aliases, c.want[ep.Network]) {
				t.Errorf("ovctl inspect %s: aliases on %s %v, want %v", c.name, ep.Network, ep.Aliases, c.want[ep.Network])
			}
		}
	}
	// a user-defined bridge network (one host) has the resolver too
	ctl(t, l, "host1", "network", "create", "--subnet", "10.98.0.0/24", "dnsbr")
	t.Cleanup(func() { _, _ = ctlOut(l, "host1", "network", "rm", "dnsbr") })
	b1 := dnsRun(t, l, "host1", "br1", "dnsbr", nil, "busybox", sleeper...)
	b2 := dnsRun(t, l, "host1", "br2", "dnsbr", []string{"--network-alias", "brdb"}, "busybox", sleeper...)
	testutil.Eventually(t, 5*time.Second, func() error { return expectA(b1, "brdb", b2.IP) })
	if err := ping(l, b2, "br1"); err != nil {
		t.Fatal(err)
	}
}

// endpointIP is a container's address on a network, from `ovctl inspect`.
func endpointIP(t *testing.T, l *lab.Lab, host, name, network string) string {
	t.Helper()
	for _, ep := range inspect(t, l, host, name).Networks {
		if ep.Network == network {
			return ep.IP
		}
	}
	t.Fatalf("%s on %s has no address on %s", name, host, network)
	return ""
}

// TestDNSAliasRoundRobin: an alias held by three containers on three hosts gives all three addresses,
// in rotating order (consecutive queries give different first answers).
func TestDNSAliasRoundRobin(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "dnsrr", "--subnet", "10.93.0.0/24")
	var want []string
	for i, h := range []string{"host1", "host2", "host3"} {
		c := dnsRun(t, l, h, "rr"+strconv.Itoa(i+1), "dnsrr", []string{"--network-alias", "svc"}, "busybox", sleeper...)
		want = append(want, c.IP)
	}
	asker := dnsRun(t, l, "host2", "rr-client", "dnsrr", nil, "busybox", sleeper...)
	testutil.Eventually(t, 10*time.Second, func() error { return expectA(asker, "svc", want...) })
	var firsts []string
	for i := 0; i < 6; i++ {
		_, got, err := lookupA(asker, "svc")
		if err != nil {
			t.Fatal(err)
		}
		if !sameSet(got, want) {
			t.Fatalf("query %d for svc: %v, want %v", i, got, want)
		}
		firsts = append(firsts, got[0])
	}
	for i := 1; i < len(firsts); i++ {
		if firsts[i] == firsts[i-1] {
			t.Fatalf("consecutive answers for svc begin with the same address (no rotation): first answers %v", firsts)
		}
	}
	t.Logf("first answers of 6 consecutive queries: %v", firsts)
}

// TestDNSRemovedName: after `ovctl rm -f` of a container on host1, its name gives NXDOMAIN on host1 at
// once and on host2 within 1 second (polled every 50 ms); the same for `ovctl stop`; on a user-defined
// bridge network, NXDOMAIN at once. (ov cannot start
// an exited container again yet: `ovctl start` refuses it, so a stopped name coming back is not tested.)
func TestDNSRemovedName(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "dnsrm", "--subnet", "10.94.0.0/24")
	gone := dnsRun(t, l, "host1", "gone", "dnsrm", nil, "busybox", sleeper...)
	near := dnsRun(t, l, "host1", "rm-near", "dnsrm", nil, "busybox", sleeper...)
	far := dnsRun(t, l, "host2", "rm-far", "dnsrm", nil, "busybox", sleeper...)
	for _, c := range []container{near, far} {
		testutil.Eventually(t, 10*time.Second, func() error { return expectA(c, "gone", gone.IP) })
	}
	nameGoes(t, l, []string{"rm", "-f", "gone"}, near, far, "gone")

	stopped := dnsRun(t, l, "host1", "stopped", "dnsrm", nil, "busybox", sleeper...)
	testutil.Eventually(t, 10*time.Second, func() error { return expectA(far, "stopped", stopped.IP) })
	nameGoes(t, l, []string{"stop", "-t", "1", "stopped"}, near, far, "stopped")

	// on a user-defined bridge network (this host's names only, no controller), at once
	ctl(t, l, "host1", "network", "create", "--subnet", "10.85.0.0/24", "dnsrmbr")
	t.Cleanup(func() { _, _ = ctlOut(l, "host1", "network", "rm", "dnsrmbr") })
	bgone := dnsRun(t, l, "host1", "br-gone", "dnsrmbr", nil, "busybox", sleeper...)
	bnear := dnsRun(t, l, "host1", "br-near", "dnsrmbr", nil, "busybox", sleeper...)
	testutil.Eventually(t, 5*time.Second, func() error { return expectA(bnear, "br-gone", bgone.IP) })
	ctl(t, l, "host1", "rm", "-f", "br-gone")
	if err := expectNX(bnear, "br-gone"); err != nil {
		t.Fatalf("user-defined bridge network, right after ovctl rm -f returned: %v", err)
	}
}

// nameGoes runs an ovctl command on host1 that ends a container's life (rm -f, stop) and checks that
// its name gives NXDOMAIN in near (on host1) at once and in far (host2) within 1 s.
func nameGoes(t *testing.T, l *lab.Lab, cmd []string, near, far container, name string) {
	t.Helper()
	start := time.Now()
	ctl(t, l, "host1", cmd...)
	done := time.Now()
	if err := expectNX(near, name); err != nil {
		t.Fatalf("on the container's own host, right after ovctl %s returned: %v", strings.Join(cmd, " "), err)
	}
	var last error
	for {
		if last = expectNX(far, name); last == nil {
			break
		}
		if time.Since(done) > 10*time.Second {
			t.Fatalf("host2 still resolves %s 10 s after ovctl %s: %v", name, strings.Join(cmd, " "), last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(done)
	t.Logf("ovctl %s: NXDOMAIN on host2 %v after it returned (%v after it started)", strings.Join(cmd, " "), took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if took > time.Second {
		t.Fatalf("host2 resolved %s for %v after ovctl %s returned, want under 1 s", name, took.Round(time.Millisecond), strings.Join(cmd, " "))
	}
}

// TestDNSAgentRestart: while host1's agent is killed (SIGKILL) and started again, host2 keeps resolving
// the container on host1 with no NXDOMAIN, and the container on host1 keeps resolving too: its shim
// kept the resolver's sockets, so a lookup sent while no agent runs waits and is answered by the new
// agent (none refused, none lost), still with no NXDOMAIN at any time.
func TestDNSAgentRestart(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "dnsar", "--subnet", "10.90.0.0/24")
	a := dnsRun(t, l, "host1", "ar1", "dnsar", nil, "busybox", sleeper...)
	b := dnsRun(t, l, "host2", "ar2", "dnsar", nil, "busybox", sleeper...)
	testutil.Eventually(t, 10*time.Second, func() error { return resolveAll([]container{a, b}) })

	var mu sync.Mutex
	var nx, failed []string
	answered, answeredHere := 0, 0
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for _, q := range [][2]container{{b, a}, {a, b}} {
				rcode, _, err := lookupA(q[0], q[1].Name)
				mu.Lock()
				switch {
				case err == nil && rcode == "NXDOMAIN":
					nx = append(nx, q[0].Name+" asking for "+q[1].Name)
				case err != nil && q[0].Host == "host1":
					// The shim kept the resolver's sockets: the query waits for the new agent.
					failed = append(failed, err.Error())
				case err == nil && q[0].Host == "host1":
					answeredHere++
				case err == nil:
					answered++
				}
				mu.Unlock()
			}
		}
	}()
	if err := l.KillAgent("host1", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // below ask's 5 s deadline with the agent's start
	if err := l.StartAgent(context.Background(), "host1"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error { return expectA(a, b.Name, b.IP) })
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	if len(nx) > 0 {
		t.Fatalf("NXDOMAIN for a live container around an agent restart: %v", nx)
	}
	if len(failed) > 0 {
		t.Fatalf("lookups failed on host1 while its agent restarted (%d answered): %v", answeredHere, failed)
	}
	if err := resolveAll([]container{a, b}); err != nil {
		t.Fatal(err)
	}
	t.Logf("host2 answered %d lookups of ar1 during the restart, host1 %d of ar2, none failed", answered, answeredHere)
}

// TestDNSWithoutController: with the controller killed, the names of existing containers keep
// resolving on every host, and go on resolving, with no NXDOMAIN, while it starts again and the agents
// reconnect.
func TestDNSWithoutController(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "dnsck", "--subnet", "10.95.0.0/24")
	var cs []container
	for i, h := range []string{"host1", "host2", "host3"} {
		cs = append(cs, dnsRun(t, l, h, "ck"+strconv.Itoa(i+1), "dnsck", nil, "busybox", sleeper...))
	}
	testutil.Eventually(t, 10*time.Second, func() error { return resolveAll(cs) })

	if err := l.KillController(); err != nil {
		t.Fatal(err)
	}
	up := false
	t.Cleanup(func() {
		if !up {
			_ = l.StartController(context.Background())
		}
	})
	killed := time.Now()
	// every 100 ms, every host asks for every name: 5 s with the controller dead (two agent resyncs),
	// then while it starts again, then 5 s more
	var mu sync.Mutex
	var failures []string
	rounds := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			err := resolveAll(cs)
			mu.Lock()
			rounds++
			if err != nil && len(failures) < 10 {
				failures = append(failures, fmt.Sprintf("%v after the kill: %v", time.Since(killed).Round(time.Millisecond), err))
			}
			mu.Unlock()
		}
	}()
	time.Sleep(5 * time.Second)
	restart := time.Now()
	err := l.StartController(context.Background())
	up = err == nil
	t.Logf("controller down for %v, back in %v", time.Since(killed).Round(time.Millisecond), time.Since(restart).Round(time.Millisecond))
	time.Sleep(5 * time.Second)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if len(failures) > 0 || rounds < 20 {
		t.Fatalf("%d rounds of lookups; failures:\n%s", rounds, strings.Join(failures, "\n"))
	}
	t.Logf("%d rounds of 6 lookups each, all answered", rounds)
}

// resolveAll has every container resolve the names of the others.
func resolveAll(cs []container) error {
	for _, c := range cs {
		for _, d := range cs {
			if c.Name != d.Name {
				if err := expectA(c, d.Name, d.IP); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// TestDNSForwarding: names outside the cluster go to the container's --dns server, an upstream the
// test runs on the underlay: over UDP, and over TCP for an answer beyond 512 bytes (the upstream
// truncates every UDP answer: the resolver retries over TCP and gives an EDNS0 client the whole answer
// over UDP; a client without EDNS0 gets TC and the whole answer over TCP); an upstream that never answers, or an address where nothing answers, gives SERVFAIL
// within 2 s; an unknown single-label name gives NXDOMAIN without leaving the host; containers of an
// --internal network get no forwarding.
func TestDNSForwarding(t *testing.T) {
	l := sharedLab(t)
	u := startUpstream(t, l)
	networkOn(t, l, "dnsfwd", "--subnet", "10.96.0.0/24")
	networkOn(t, l, "dnsint", "--subnet", "10.97.0.0/24", "--internal")
	fwd := dnsRun(t, l, "host2", "fwd", "dnsfwd", []string{"--dns", u.Addr}, "busybox", sleeper...)

	if err := expectA(fwd, extName, extAddr); err != nil {
		t.Fatal(err)
	}
	if u.saw("udp", extName) == 0 {
		t.Fatalf("the upstream saw no UDP query for %s; it saw: %v", extName, u.seen)
	}
	out, err := execIn(l, fwd, "nslookup", "ext.example")
	if err != nil || !strings.Contains(out, extAddr) {
		t.Fatalf("nslookup ext.example in fwd: %v\n%s", err, out)
	}

	// big.example: 100 A records, 2.7 kB; the upstream truncates every UDP answer to 512 bytes. A UDP
	// query with EDNS0 (4096) gets them all over UDP: the resolver must have retried over TCP.
	r, err := ask(fwd.NetNS, "udp", bigName, dns.TypeA, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := aRecords(r.Msg); len(got) != bigCount || r.Msg.Truncated || u.saw("tcp", bigName) == 0 {
		t.Fatalf("%s over UDP with EDNS0 4096: %s, %d bytes, %d A records, TC=%v; the upstream saw %d TCP queries for it; want %d records, no TC, and the resolver's retry over TCP", bigName, dns.RcodeToString[r.Msg.Rcode], r.Size, len(got), r.Msg.Truncated, u.saw("tcp", bigName), bigCount)
	}
	t.Logf("upstream saw %d UDP and %d TCP queries for %s", u.saw("udp", bigName), u.saw("tcp", bigName), bigName)
	// a client without EDNS0 gets at most 512 bytes with TC set, and everything over TCP
	if r, err = ask(fwd.NetNS, "udp", bigName, dns.TypeA, false); err != nil {
		t.Fatal(err)
	}
	if r.Size > 512 || !r.Msg.Truncated {
		t.Fatalf("%s over UDP without EDNS0: %d bytes, TC=%v, %d records; want at most 512 bytes with TC set", bigName, r.Size, r.Msg.Truncated, len(r.Msg.Answer))
	}
	if r, err = ask(fwd.NetNS, "tcp", bigName, dns.TypeA, false); err != nil {
		t.Fatal(err)
	}
	if got := aRecords(r.Msg); len(got) != bigCount {
		t.Fatalf("%s over TCP: %s with %d A records, want %d", bigName, dns.RcodeToString[r.Msg.Rcode], len(got), bigCount)
	}

	// an unknown single-label name does not leave the host
	before := u.total()
	if err := expectNX(fwd, "nosuchcontainer"); err != nil {
		t.Fatal(err)
	}
	if u.total() != before {
		t.Fatalf("the single-label name nosuchcontainer was forwarded upstream: %v", u.seen[before:])
	}

	checkUnreachableUpstreams(t, l, u)

	// --internal: nothing leaves the cluster, not even a DNS query
	in := dnsRun(t, l, "host2", "fwd-int", "dnsint", []string{"--dns", u.Addr}, "busybox", sleeper...)
	before = u.total()
	rcode, got, err := lookupA(in, extName)
	if err != nil {
		t.Fatal(err)
	}
	if rcode == "NOERROR" || u.total() != before {
		t.Fatalf("a container of an --internal network asked for %s: %s %v; the upstream saw %d new queries, want none and no answer", extName, rcode, got, u.total()-before)
	}
	t.Logf("on an --internal network, %s gives %s", extName, rcode)
}

// checkUnreachableUpstreams: --dns pointing to a server that never answers, or to an address where
// nothing answers, gives SERVFAIL within 2 s, over UDP and TCP.
func checkUnreachableUpstreams(t *testing.T, l *lab.Lab, u *upstream) {
	t.Helper()
	for i, c := range []struct{ host, addr, what string }{
		{"host3", u.Blackhole, "a server that never answers"},
		{"host1", u.Nothing, "an address nothing answers on"},
	} {
		ct := dnsRun(t, l, c.host, "fwd-dead"+strconv.Itoa(i), "dnsfwd", []string{"--dns", c.addr}, "busybox", sleeper...)
		for _, proto := range []string{"udp", "tcp"} {
			r, err := ask(ct.NetNS, proto, extName, dns.TypeA, false)
			if err != nil {
				t.Fatalf("upstream %s (%s), over %s: %v", c.addr, c.what, proto, err)
			}
			if r.Msg.Rcode != dns.RcodeServerFailure || r.Took > 2*time.Second {
				t.Fatalf("upstream %s (%s), over %s: %s after %v, want SERVFAIL within 2 s", c.addr, c.what, proto, dns.RcodeToString[r.Msg.Rcode], r.Took.Round(time.Millisecond))
			}
			t.Logf("upstream %s (%s), over %s: SERVFAIL after %v", c.addr, c.what, proto, r.Took.Round(time.Millisecond))
		}
	}
}

// TestDNSResolvConf: --dns, --dns-search and --dns-option land in the container's resolv.conf: on the
// default bridge network as given (as Docker: it has no resolver, its resolv.conf never names
// 127.0.0.11 and nothing answers there); on a user-defined network the only nameserver is the
// resolver at 127.0.0.11 (the --dns servers are its upstreams), with the search domains and options.
func TestDNSResolvConf(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "dnsrc", "--subnet", "10.99.0.0/24")
	flags := []string{"--dns", "192.0.2.53", "--dns", "192.0.2.54", "--dns-search", "corp.example", "--dns-search", "lab.example", "--dns-option", "ndots:3", "--dns-option", "timeout:1"}
	wantSearch := []string{"corp.example", "lab.example"}
	wantOpts := []string{"ndots:3", "timeout:1"}

	br := dnsRun(t, l, "host1", "rc-bridge", "bridge", flags, "busybox", sleeper...)
	servers, search, opts, raw := resolvConf(t, l, br)
	if !equal(servers, []string{"192.0.2.53", "192.0.2.54"}) || !equal(search, wantSearch) || !containsAll(opts, wantOpts) {
		t.Fatalf("default bridge network with %v: resolv.conf\n%s\nwant nameservers 192.0.2.53 192.0.2.54, search %v, options %v", flags, raw, wantSearch, wantOpts)
	}

	ov := dnsRun(t, l, "host2", "rc-overlay", "dnsrc", flags, "busybox", sleeper...)
	servers, search, opts, raw = resolvConf(t, l, ov)
	if !equal(servers, []string{resolverAddr}) || !equal(search, wantSearch) || !containsAll(opts, wantOpts) {
		t.Fatalf("overlay network with %v: resolv.conf\n%s\nwant the one nameserver %s, search %v, options %v", flags, raw, resolverAddr, wantSearch, wantOpts)
	}

	plain := dnsRun(t, l, "host1", "rc-plain", "bridge", nil, "busybox", sleeper...)
	servers, _, _, raw = resolvConf(t, l, plain)
	if strings.Contains(raw, resolverAddr) {
		t.Fatalf("a container of the default bridge network has %s in its resolv.conf (servers %v):\n%s", resolverAddr, servers, raw)
	}
	for _, proto := range []string{"udp", "tcp"} {
		if r, err := ask(plain.NetNS, proto, "rc-bridge", dns.TypeA, false); err == nil {
			t.Fatalf("something answers at %s:53/%s in a container of the default bridge network: %v", resolverAddr, proto, r.Msg)
		}
	}
}

func equal(a, b []string) bool { return strings.Join(a, " ") == strings.Join(b, " ") }

func containsAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

var gaiResult = regexp.MustCompile(`lookups=(\d+) failed=(\d+) slow=(\d+) p50_us=(\d+) p99_us=(\d+) max_us=(\d+)`)

// TestDNSGlibcClient: a program linked against glibc, in a container on host2, resolves 10,000 names
// (web on host1, an alias held on two hosts, web.NETWORK) with getaddrinfo(AF_UNSPEC): glibc sends A
// and AAAA together from one socket to 127.0.0.11, the pattern that stalls 5 s when a resolver behind
// NAT loses one of them in conntrack; meanwhile dnsperf in another container of the host sends the
// resolver 20,000 queries/s. No lookup fails, none takes a second.
func TestDNSGlibcClient(t *testing.T) {
	l := sharedLab(t)
	tarball := glibcTarball(t)
	ctl(t, l, "host2", "image", "import", tarball, "glibc")
	networkOn(t, l, "dnsgai", "--subnet", "10.89.0.0/24")
	dnsRun(t, l, "host1", "gai-web", "dnsgai", []string{"--network-alias", "gai-svc"}, "busybox", sleeper...)
	dnsRun(t, l, "host3", "gai-db", "dnsgai", []string{"--network-alias", "gai-svc"}, "busybox", sleeper...)
	c := dnsRun(t, l, "host2", "gai", "dnsgai", nil, "glibc", sleeper...)
	_, _, opts, raw := resolvConf(t, l, c)
	for _, o := range opts {
		if strings.HasPrefix(o, "single-request") || o == "use-vc" {
			t.Fatalf("the container's resolv.conf has option %s, which hides the A+AAAA race:\n%s", o, raw)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		out, err := execIn(l, c, "/usr/local/bin/gailoop", "1", "gai-web")
		if err != nil || !strings.Contains(out, "failed=0") {
			return fmt.Errorf("gailoop 1 gai-web: %v %s", err, out)
		}
		return nil
	})
	// meanwhile another container of host2 keeps the resolver busy: dnsperf, 20,000 queries/s
	noise := dnsRun(t, l, "host2", "gai-noise", "dnsgai", nil, "busybox", sleeper...)
	stopNoise := dnsperfNoise(t, noise, "gai-web", 20000)
	start := time.Now()
	out, err := execIn(l, c, "/usr/local/bin/gailoop", "10000", "gai-web", "gai-svc", "gai-db.dnsgai")
	took := time.Since(start)
	t.Logf("meanwhile, from gai-noise: %s", stopNoise())
	if err != nil {
		t.Fatalf("gailoop: %v\n%s", err, out)
	}
	m := gaiResult.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("gailoop printed %q", out)
	}
	t.Logf("glibc client: %s in %v", strings.TrimSpace(m[0]), took.Round(time.Millisecond))
	if m[1] != "10000" || m[2] != "0" || m[3] != "0" {
		t.Fatalf("glibc client, 10,000 lookups: %s (failed: lookups with an error; slow: taking 1 s or more)", m[0])
	}
}
