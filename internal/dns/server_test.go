package dns

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

func TestTable(t *testing.T) {
	tb := testTable()
	front, back := []string{"front"}, []string{"back"}
	cases := []struct {
		name     string
		networks []string
		q        string
		want     []string
	}{
		{"container name", front, "web", []string{"10.1.0.2"}},
		{"case and trailing dot", front, "WEB.", []string{"10.1.0.2"}},
		{"short ID", front, idWeb[:12], []string{"10.1.0.2"}},
		{"full ID is not a name", front, idWeb, nil},
		{"hostname", front, "webhost", []string{"10.1.0.2"}},
		{"NAME.NETWORK", front, "web.front", []string{"10.1.0.2"}},
		{"NAME.OTHERNETWORK", front, "web.back", nil},
		{"alias held by three", front, "app", []string{"10.1.0.2", "10.1.0.3", "10.1.0.4"}},
		{"isolation: db is on back only", front, "db", nil},
		{"db from back", back, "db", []string{"10.2.0.2"}},
		{"isolation: web from back", back, "web", nil},
		{"both networks", []string{"front", "back"}, "db", []string{"10.2.0.2"}},
		{"no networks", nil, "web", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, a := range tb.Lookup(c.networks, c.q) {
				got = append(got, a.String())
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Lookup(%v, %q) (-want +got):\n%s", c.networks, c.q, diff)
			}
		})
	}
	if got := tb.Reverse(front, netip.MustParseAddr("10.1.0.2")); !slices.Equal(got, []string{"web"}) {
		t.Errorf("Reverse(front, 10.1.0.2) = %v, want [web]", got)
	}
	if got := tb.Reverse(front, netip.MustParseAddr("10.2.0.2")); got != nil {
		t.Errorf("Reverse(front, db's address) = %v, want nothing (isolation)", got)
	}
	tb.Remove("front", idWeb)
	if got := tb.Lookup(front, "web"); got != nil {
		t.Errorf("after Remove, web = %v", got)
	}
	tb.SetNetwork("front", []Record{{Container: idWeb, IP: netip.MustParseAddr("10.1.0.7"), Names: []string{"web"}}})
	if got := tb.Lookup(front, "web"); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.1.0.7")}) {
		t.Errorf("after SetNetwork, web = %v", got)
	}
	if got := tb.Lookup(front, "app"); got != nil {
		t.Errorf("after SetNetwork, app = %v (the old records must be gone)", got)
	}
	tb.SetNetwork("front", nil)
	if got := tb.Lookup(front, "web"); got != nil {
		t.Errorf("after SetNetwork(nil), web = %v", got)
	}
}

func TestAnswers(t *testing.T) {
	up := startUpstream(t, answerA(0))
	_, addr := serve(t, testTable(), Config{Upstreams: []netip.AddrPort{up.addr}}, Client{Container: idCli, Networks: []string{"front"}})
	cases := []struct {
		name  string
		q     string
		qtype uint16
		rcode int
		want  []string
	}{
		{"name", "web", mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.2"}},
		{"short ID", idWeb[:12], mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.2"}},
		{"hostname", "WebHost", mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.2"}},
		{"name.network", "web.front", mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.2"}},
		{"AAAA of a known name is NODATA", "web", mdns.TypeAAAA, mdns.RcodeSuccess, nil},
		{"MX of a known name is NODATA", "web", mdns.TypeMX, mdns.RcodeSuccess, nil},
		{"isolation: db is on another network", "db", mdns.TypeA, mdns.RcodeNameError, nil},
		{"unknown single label", "nosuch", mdns.TypeA, mdns.RcodeNameError, nil},
		{"unknown single label AAAA", "nosuch", mdns.TypeAAAA, mdns.RcodeNameError, nil},
		{"PTR", "2.0.1.10.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"web."}},
		{"external name", "example.com", mdns.TypeA, mdns.RcodeSuccess, []string{"192.0.2.1"}},
	}
	for _, c := range cases {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(c.name+"/"+network, func(t *testing.T) {
				r := query(t, addr, network, c.q, c.qtype)
				if r.Rcode != c.rcode {
					t.Errorf("rcode %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[c.rcode])
				}
				if diff := cmp.Diff(c.want, addrsOf(r)); diff != "" {
					t.Errorf("answers (-want +got):\n%s", diff)
				}
				for _, rr := range r.Answer {
					if strings.HasSuffix(c.q, "example.com") {
						continue
					}
					if rr.Header().Ttl != DefaultTTL {
						t.Errorf("TTL %d, want %d", rr.Header().Ttl, DefaultTTL)
					}
				}
			})
		}
	}
	if n := up.udp.Load() + up.tcp.Load(); n != 2 {
		t.Errorf("the upstream saw %d queries, want 2 (example.com over UDP and TCP only)", n)
	}
}

// TestIsolation: a client on back sees nothing of front, by name or address; with isolation removed
// (every network answered) it would get web's address.
func TestIsolation(t *testing.T) {
	up := startUpstream(t, answerA(0))
	_, addr := serve(t, testTable(), Config{Upstreams: []netip.AddrPort{up.addr}}, Client{Container: "x", Networks: []string{"back"}})
	for _, name := range []string{"web", "app", "web.front", idWeb[:12]} {
		// web.front has two labels: not ours for this client, so the upstream answers it.
		if r := query(t, addr, "udp", name, mdns.TypeA); slices.Contains(addrsOf(r), "10.1.0.2") {
			t.Errorf("%s from a container on back: %v, want nothing of front", name, addrsOf(r))
		}
	}
	r := query(t, addr, "udp", "2.0.1.10.in-addr.arpa", mdns.TypePTR)
	for _, a := range addrsOf(r) {
		if a == "web." {
			t.Errorf("PTR of web's address from a container on back answered web")
		}
	}
	if r := query(t, addr, "udp", "db", mdns.TypeA); !slices.Equal(addrsOf(r), []string{"10.2.0.2"}) {
		t.Errorf("db from back: %v, want [10.2.0.2]", addrsOf(r))
	}
}

func TestRotation(t *testing.T) {
	_, addr := serve(t, testTable(), Config{}, Client{Container: idCli, Networks: []string{"front"}})
	firsts := map[string]int{}
	for range 30 {
		for _, network := range []string{"udp", "tcp"} {
			r := query(t, addr, network, "app", mdns.TypeA)
			got := addrsOf(r)
			sorted := slices.Sorted(slices.Values(got))
			if !slices.Equal(sorted, []string{"10.1.0.2", "10.1.0.3", "10.1.0.4"}) {
				t.Fatalf("app: %v, want all three addresses", got)
			}
			firsts[got[0]]++
		}
	}
	if len(firsts) != 3 {
		t.Errorf("first addresses over 60 queries: %v, want each of the three to lead (round robin)", firsts)
	}
}

// TestLocalNXDOMAIN: unknown single-label names never leave the host.
func TestLocalNXDOMAIN(t *testing.T) {
	up := startUpstream(t, answerA(0))
	_, addr := serve(t, testTable(), Config{Upstreams: []netip.AddrPort{up.addr}}, Client{Container: idCli, Networks: []string{"front"}})
	for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeTXT} {
		if r := query(t, addr, "udp", "nosuchhost", qt); r.Rcode != mdns.RcodeNameError {
			t.Errorf("nosuchhost %s: %s, want NXDOMAIN", mdns.TypeToString[qt], mdns.RcodeToString[r.Rcode])
		}
	}
	if n := up.udp.Load() + up.tcp.Load(); n != 0 {
		t.Errorf("the upstream received %d queries for single-label names, want 0", n)
	}
}

// TestPendingNetworkIsNotNXDOMAIN: until a pending network's records arrive, an unknown single-label
// name is SERVFAIL, not a wrong NXDOMAIN for a container that may be alive; known names still resolve.
func TestPendingNetworkIsNotNXDOMAIN(t *testing.T) {
	tb := testTable()
	tb.Pending("front")
	_, addr := serve(t, tb, Config{}, Client{Container: idCli, Networks: []string{"front"}})
	for _, network := range []string{"udp", "tcp"} {
		if r := query(t, addr, network, "notyet", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
			t.Errorf("%s: unknown name on a pending network: %s, want SERVFAIL", network, mdns.RcodeToString[r.Rcode])
		}
		if r := query(t, addr, network, "web", mdns.TypeA); len(r.Answer) != 1 {
			t.Errorf("%s: web on a pending network: %v", network, addrsOf(r))
		}
	}
	tb.SetNetwork("front", []Record{{Container: idWeb, IP: netip.MustParseAddr("10.1.0.2"), Names: []string{"web"}}})
	if r := query(t, addr, "udp", "notyet", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("unknown name once the network is known: %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
	}
	tb.Pending("empty")
	if got := tb.Lookup([]string{"empty"}, "x"); got != nil {
		t.Errorf("a pending network without records: %v", got)
	}
}

func TestForwardTruncatedRetriedOverTCP(t *testing.T) {
	// Over UDP the upstream sends only a truncated answer; over TCP the whole one (40 records, > 512 bytes).
	up := startUpstream(t, func(tcp bool, q *mdns.Msg) *mdns.Msg {
		r := answerA(40)(tcp, q)
		if !tcp {
			r.Answer = nil
			r.Truncated = true
		}
		return r
	})
	_, addr := serve(t, testTable(), Config{Upstreams: []netip.AddrPort{up.addr}}, Client{Container: idCli, Networks: []string{"front"}})

	// An EDNS client with room for it gets the whole answer over UDP: the server retried over TCP.
	m := new(mdns.Msg)
	m.SetQuestion("big.example.", mdns.TypeA)
	m.SetEdns0(4096, false)
	r, _, err := (&mdns.Client{Net: "udp", UDPSize: 4096}).Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 41 || r.Truncated {
		t.Errorf("EDNS client: %d answers (truncated %v), want 41", len(r.Answer), r.Truncated)
	}
	if up.tcp.Load() != 1 {
		t.Errorf("upstream TCP queries: %d, want 1 (the retry of the truncated answer)", up.tcp.Load())
	}
	// A plain client gets TC over UDP, then the whole answer over TCP.
	r = query(t, addr, "udp", "big.example", mdns.TypeA)
	if !r.Truncated {
		t.Errorf("plain UDP client: answer of %d records not truncated", len(r.Answer))
	}
	r = query(t, addr, "tcp", "big.example", mdns.TypeA)
	if len(r.Answer) != 41 {
		t.Errorf("over TCP: %d answers, want 41", len(r.Answer))
	}
}

func TestForwardUnreachableIsServfailWithinTimeout(t *testing.T) {
	hole, seen := blackhole(t)
	_, addr := serve(t, testTable(), Config{Upstreams: []netip.AddrPort{hole}}, Client{Container: idCli, Networks: []string{"front"}})
	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		r := query(t, addr, network, "example.com", mdns.TypeA)
		took := time.Since(start)
		if r.Rcode != mdns.RcodeServerFailure {
			t.Errorf("%s: %s, want SERVFAIL", network, mdns.RcodeToString[r.Rcode])
		}
		// Over UDP the query waits for the whole budget; over TCP the refused connection fails at once.
		if took > 2*time.Second || (network == "udp" && took < DefaultTimeout-100*time.Millisecond) {
			t.Errorf("%s: SERVFAIL after %v, want about %v (and within 2s)", network, took, DefaultTimeout)
		}
	}
	if seen.Load() == 0 {
		t.Errorf("the blackhole upstream received nothing")
	}
}

func TestForwardNextUpstream(t *testing.T) {
	hole, _ := blackhole(t)
	up := startUpstream(t, answerA(0))
	_, addr := serve(t, testTable(), Config{Upstreams: []netip.AddrPort{hole, up.addr}}, Client{Container: idCli, Networks: []string{"front"}})
	if r := query(t, addr, "udp", "example.com", mdns.TypeA); !slices.Equal(addrsOf(r), []string{"192.0.2.1"}) {
		t.Errorf("with a dead first upstream: %v %s, want the second's answer", addrsOf(r), mdns.RcodeToString[r.Rcode])
	}
	// The client's own upstreams (--dns) win over the host's.
	_, addr2 := serve(t, testTable(), Config{Upstreams: []netip.AddrPort{hole}}, Client{Container: "c2", Networks: []string{"front"}, Upstreams: []netip.AddrPort{up.addr}})
	if r := query(t, addr2, "udp", "example.com", mdns.TypeA); !slices.Equal(addrsOf(r), []string{"192.0.2.1"}) {
		t.Errorf("--dns upstream: %v %s, want its answer", addrsOf(r), mdns.RcodeToString[r.Rcode])
	}
}

// TestInflightBound: with MaxInflight forwarded queries hanging on a dead upstream, the next one is
// answered SERVFAIL at once instead of joining them.
func TestInflightBound(t *testing.T) {
	hole, seen := blackhole(t)
	const max = 4
	s, addr := serve(t, testTable(), Config{Upstreams: []netip.AddrPort{hole}, MaxInflight: max, Timeout: 3 * time.Second}, Client{Container: idCli, Networks: []string{"front"}})
	var wg sync.WaitGroup
	for i := range max {
		wg.Go(func() { tryQuery(addr, "udp", fmt.Sprintf("h%d.example", i), mdns.TypeA, 4*time.Second) })
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.busy.Load() < max && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	r, err := tryQuery(addr, "udp", "one-too-many.example", mdns.TypeA, 2*time.Second)
	if err != nil {
		t.Fatalf("query beyond the bound: %v (want an immediate SERVFAIL)", err)
	}
	if r.Rcode != mdns.RcodeServerFailure || time.Since(start) > 500*time.Millisecond {
		t.Errorf("query beyond the bound: %s after %v, want SERVFAIL at once", mdns.RcodeToString[r.Rcode], time.Since(start))
	}
	// Table names are still answered.
	if r := query(t, addr, "udp", "web", mdns.TypeA); len(r.Answer) != 1 {
		t.Errorf("web while the forwarder is saturated: %v", addrsOf(r))
	}
	if n := seen.Load(); n != max {
		t.Errorf("the upstream received %d queries, want %d", n, max)
	}
	wg.Wait()
}

// TestNoForward: a container of an --internal network gets SERVFAIL for outside names and nothing
// is sent upstream; its table names still resolve.
func TestNoForward(t *testing.T) {
	up := startUpstream(t, answerA(0))
	_, addr := serve(t, testTable(), Config{Upstreams: []netip.AddrPort{up.addr}}, Client{Container: idCli, Networks: []string{"front"}, NoForward: true})
	for _, network := range []string{"udp", "tcp"} {
		if r := query(t, addr, network, "example.com", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
			t.Errorf("%s: example.com from an internal network: %s %v, want SERVFAIL", network, mdns.RcodeToString[r.Rcode], addrsOf(r))
		}
		if r := query(t, addr, network, "web", mdns.TypeA); len(r.Answer) != 1 {
			t.Errorf("%s: web from an internal network: %v", network, addrsOf(r))
		}
	}
	if n := up.udp.Load() + up.tcp.Load(); n != 0 {
		t.Errorf("the upstream received %d queries from an internal network, want 0", n)
	}
}

func TestUpdateAndRemove(t *testing.T) {
	s, addr := serve(t, testTable(), Config{}, Client{Container: idCli, Networks: []string{"front"}})
	if r := query(t, addr, "udp", "db", mdns.TypeA); len(r.Answer) != 0 {
		t.Fatalf("db before connect: %v", addrsOf(r))
	}
	s.SetNetworks(idCli, []string{"front", "back"})
	if r := query(t, addr, "udp", "db", mdns.TypeA); len(r.Answer) != 1 {
		t.Errorf("db after connecting to back: %v", addrsOf(r))
	}
	s.SetNetworks(idCli, []string{"back"})
	if r := query(t, addr, "udp", "web", mdns.TypeA); len(r.Answer) != 0 {
		t.Errorf("web after disconnecting from front: %v", addrsOf(r))
	}
	s.Remove(idCli)
	s.Remove(idCli) // twice: nothing
	if _, err := tryQuery(addr, "udp", "db", mdns.TypeA, 300*time.Millisecond); err == nil {
		t.Errorf("the UDP socket still answers after Remove")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("the TCP socket still accepts after Remove")
	}
	s.SetNetworks("nobody", []string{"x"}) // not served: nothing
}

func TestMalformed(t *testing.T) {
	_, addr := serve(t, testTable(), Config{}, Client{Container: idCli, Networks: []string{"front"}})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	junk := [][]byte{
		{},
		{1, 2, 3},
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, // a pointer loop
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 63},                     // a label past the end
		make([]byte, 2000), // longer than the read buffer
	}
	for _, j := range junk {
		c.Write(j)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 512)
	for range 2 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("want a FORMERR for each of the two queries with a readable header: %v", err)
		}
		var m mdns.Msg
		if err := m.Unpack(buf[:n]); err != nil || m.Rcode != mdns.RcodeFormatError || m.Id != 0x1234 {
			t.Errorf("answer to junk: %v rcode %d id %x, want FORMERR with the query's ID", err, m.Rcode, m.Id)
		}
	}
	if r := query(t, addr, "udp", "web", mdns.TypeA); len(r.Answer) != 1 {
		t.Errorf("after junk, web: %v", addrsOf(r))
	}
}

func TestEDNS(t *testing.T) {
	_, addr := serve(t, testTable(), Config{}, Client{Container: idCli, Networks: []string{"front"}})
	m := new(mdns.Msg)
	m.SetQuestion("web.", mdns.TypeA)
	m.SetEdns0(1232, true)
	r, _, err := (&mdns.Client{Net: "udp"}).Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 1 || r.IsEdns0() == nil {
		t.Errorf("EDNS query for web: %v (OPT %v), want one answer and an OPT record", addrsOf(r), r.IsEdns0())
	}
}

func TestHostUpstreams(t *testing.T) {
	conf := `# generated
nameserver 127.0.0.53
nameserver 10.0.0.2
nameserver ::1
nameserver 2001:db8::53
nameserver bogus
nameserver
nameserver 127.0.1.1
nameserver ::ffff:192.0.2.53
options edns0 trust-ad
search example.com
`
	got := HostUpstreams([]byte(conf))
	want := []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.2:53"),
		netip.MustParseAddrPort("[2001:db8::53]:53"),
		netip.MustParseAddrPort("192.0.2.53:53"),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("HostUpstreams (-want +got):\n%s", diff)
	}
}

// TestLogOncePerProblem: a container sending junk and failing forwards all the time costs the log one
// line per kind of problem, not one per query.
func TestLogOncePerProblem(t *testing.T) {
	var buf safeBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	hole, _ := blackhole(t)
	_, addr := serve(t, testTable(), Config{Upstreams: []netip.AddrPort{hole}, Timeout: 50 * time.Millisecond, Log: log}, Client{Container: idCli, Networks: []string{"front"}})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 200 {
		c.Write([]byte{0x12, byte(i), 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 63}) // malformed
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { tryQuery(addr, "udp", fmt.Sprintf("x%d.example", i), mdns.TypeA, time.Second) })
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond)
	out := buf.String()
	if n := strings.Count(out, "could not be parsed"); n != 1 {
		t.Errorf("malformed queries logged %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "upstream resolver failed"); n != 1 {
		t.Errorf("upstream failures logged %d times, want once:\n%s", n, out)
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTableScales: a Set costs the names of one record, not the size of its network (rebuilding the
// network's index on every Set took 40 s for these 5,000 records).
func TestTableScales(t *testing.T) {
	tb := NewTable()
	const n = 5000
	start := time.Now()
	for i := range n {
		tb.Set(Record{Network: "big", Container: fmt.Sprintf("%064d", i), IP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Names: []string{fmt.Sprintf("c%d", i), "alias"}})
	}
	for i := 0; i < n; i += 2 {
		tb.Remove("big", fmt.Sprintf("%064d", i))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("%d Sets and %d Removes took %v, want well under 2s", n, n/2, took)
	}
	if got := len(tb.Lookup([]string{"big"}, "alias")); got != n/2 {
		t.Errorf("alias has %d addresses, want %d", got, n/2)
	}
	if got := tb.Lookup([]string{"big"}, "c2"); got != nil {
		t.Errorf("removed c2 still resolves: %v", got)
	}
	if got := tb.Lookup([]string{"big"}, "c3.big"); len(got) != 1 {
		t.Errorf("c3.big: %v", got)
	}
	if got := tb.Reverse([]string{"big"}, netip.AddrFrom4([4]byte{10, 0, 0, 3})); !slices.Equal(got, []string{"c3"}) {
		t.Errorf("reverse of c3: %v", got)
	}
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Container: fmt.Sprintf("%064d", i), IP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Names: []string{fmt.Sprintf("c%d", i), "alias"}}
	}
	start = time.Now()
	tb.SetNetwork("big", recs)
	took := time.Since(start)
	if got := len(tb.Lookup([]string{"big"}, "ALIAS.big")); got != n || took > time.Second {
		t.Errorf("SetNetwork of %d records: alias.big has %d addresses after %v", n, got, took)
	}
	t.Logf("SetNetwork of %d records: %v", n, took)
}

// TestManyAddressesTruncateOverUDP: an alias held by 60 containers does not fit 512 bytes: over UDP
// the answer is cut with TC set (the client asks again over TCP), over TCP it holds all 60.
func TestManyAddressesTruncateOverUDP(t *testing.T) {
	tb := NewTable()
	for i := range 60 {
		tb.Set(Record{Network: "front", Container: fmt.Sprintf("%064d", i), IP: netip.AddrFrom4([4]byte{10, 1, 1, byte(i + 1)}), Names: []string{fmt.Sprintf("m%d", i), "many"}})
	}
	_, addr := serve(t, tb, Config{}, Client{Container: idCli, Networks: []string{"front"}})
	r := query(t, addr, "udp", "many", mdns.TypeA)
	r.Compress = true // as it came: every record points at the question
	packed, _ := r.Pack()
	if !r.Truncated || len(r.Answer) == 0 || len(packed) > 512 {
		t.Errorf("over UDP: TC %v, %d answers, %d bytes; want TC, some answers, at most 512 bytes", r.Truncated, len(r.Answer), len(packed))
	}
	if r := query(t, addr, "tcp", "many", mdns.TypeA); len(r.Answer) != 60 || r.Truncated {
		t.Errorf("over TCP: %d answers (TC %v), want 60", len(r.Answer), r.Truncated)
	}
	m := new(mdns.Msg)
	m.SetQuestion("many.", mdns.TypeA)
	m.SetEdns0(4096, false)
	if r, _, err := (&mdns.Client{Net: "udp", UDPSize: 4096}).Exchange(m, addr); err != nil || len(r.Answer) != 60 {
		t.Errorf("over UDP with EDNS 4096: %v, %d answers, want 60", err, len(r.Answer))
	}
}
