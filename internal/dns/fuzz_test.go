package dns

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

func packQuery(name string, qtype uint16, edns bool) []byte {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzHandle: no input makes the handler panic; whatever it answers parses and fits the client's
// limit; and the fast path answers exactly what the general (miekg/dns) path answers.
func FuzzHandle(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"web", mdns.TypeA}, {"APP", mdns.TypeA}, {"web.front", mdns.TypeAAAA}, {"nosuch", mdns.TypeA},
		{"example.com", mdns.TypeA}, {"2.0.1.10.in-addr.arpa", mdns.TypePTR}, {".", mdns.TypeNS}, {"web", mdns.TypeMX}} {
		f.Add(packQuery(q.name, q.qtype, false))
		f.Add(packQuery(q.name, q.qtype, true))
	}
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})
	f.Add([]byte{0x12, 0x34, 0x81, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 3, 'w', 'e', 'b', 0, 0, 1, 0, 1})
	f.Add([]byte{0x12, 0x34, 0x28, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 3, 'w', 'e', 'b', 0, 0, 1, 0, 1})
	s := NewServer(testTable(), Config{})
	c := newClientCfg(Client{Container: idCli, Networks: []string{"front"}})
	f.Fuzz(func(t *testing.T, q []byte) {
		sc := &scratch{}
		for _, tcp := range []bool{false, true} {
			resp, act, limit := s.handle(nil, c, sc, q, tcp)
			if act != actRespond || len(resp) == 0 {
				continue
			}
			var m mdns.Msg
			if err := m.Unpack(resp); err != nil {
				t.Fatalf("answer does not parse: %v\nquery % x\nanswer % x", err, q, resp)
			}
			if len(resp) > limit {
				t.Fatalf("answer of %d bytes over a limit of %d", len(resp), limit)
			}
		}
		lname, qtype, qend, ok := fastQuery(q, sc)
		if !ok || qtype == mdns.TypePTR {
			return
		}
		v := s.resolve(c, sc, lname, qtype)
		slow, sact, _ := s.slowAnswer(nil, c, &scratch{}, q, false, 1)
		if v.act != sact {
			t.Fatalf("fast path action %d, general path %d, query % x", v.act, sact, q)
		}
		if v.act != actRespond {
			return
		}
		fast := appendFastReply(nil, q, qend, v, s.ttl, qtype, 1, mdns.MinMsgSize)
		var fm, sm mdns.Msg
		if err := fm.Unpack(fast); err != nil {
			t.Fatalf("fast answer does not parse: %v", err)
		}
		if err := sm.Unpack(slow); err != nil {
			t.Fatalf("general answer does not parse: %v", err)
		}
		if diff := cmp.Diff(sm.String(), fm.String()); diff != "" {
			t.Fatalf("fast and general answers differ for % x (-general +fast):\n%s", q, diff)
		}
	})
}

// BenchmarkServeUDP drives the server over loopback as dnsperf does: 4 sockets with 25 queries each
// outstanding (100 in all), asking for a table name; it reports queries per second.
func BenchmarkServeUDP(b *testing.B) {
	s := NewServer(testTable(), Config{})
	defer s.Close()
	if err := s.add(b.Context(), Client{Container: idCli, Networks: []string{"front"}}, netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		b.Fatal(err)
	}
	addr := s.lookupServed(idCli).socks.udp[0].LocalAddr().String()
	q := packQuery("web", mdns.TypeA, false)
	const conns, window = 4, 25
	var lost atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			c, err := net.Dial("udp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			n := b.N / conns
			sent, got := 0, 0
			buf := make([]byte, 512)
			for ; sent < min(window, n); sent++ {
				c.Write(q)
			}
			for got < n {
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := c.Read(buf); err != nil {
					lost.Add(int64(sent - got)) // count the window as lost and go on
					got = sent
				} else {
					got++
				}
				for ; sent < n && sent-got < window; sent++ {
					c.Write(q)
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "qps")
	b.ReportMetric(float64(lost.Load()), "lost")
}
