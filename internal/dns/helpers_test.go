package dns

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

const (
	idWeb  = "aaaaaaaaaaaa0000000000000000000000000000000000000000000000000001"
	idWeb2 = "bbbbbbbbbbbb0000000000000000000000000000000000000000000000000002"
	idWeb3 = "cccccccccccc0000000000000000000000000000000000000000000000000003"
	idDB   = "dddddddddddd0000000000000000000000000000000000000000000000000004"
	idCli  = "eeeeeeeeeeee0000000000000000000000000000000000000000000000000005"
)

// testTable: web (front 10.1.0.2, alias "app", hostname "webhost"), web2 and web3 with alias "app" on
// front, db on back only (10.2.0.2), and the client cli on front.
func testTable() *Table {
	t := NewTable()
	t.Set(Record{Network: "front", Container: idWeb, IP: netip.MustParseAddr("10.1.0.2"), Names: []string{"web", "webhost", "app"}})
	t.Set(Record{Network: "front", Container: idWeb2, IP: netip.MustParseAddr("10.1.0.3"), Names: []string{"web2", "app"}})
	t.Set(Record{Network: "front", Container: idWeb3, IP: netip.MustParseAddr("10.1.0.4"), Names: []string{"web3", "App"}})
	t.Set(Record{Network: "back", Container: idDB, IP: netip.MustParseAddr("10.2.0.2"), Names: []string{"db"}})
	t.Set(Record{Network: "front", Container: idCli, IP: netip.MustParseAddr("10.1.0.9"), Names: []string{"cli"}})
	return t
}

// serve starts a server with cfg on the table and serves c on 127.0.0.1 (a random port, UDP and TCP);
// it returns the server and the address.
func serve(t *testing.T, table *Table, cfg Config, c Client) (*Server, string) {
	t.Helper()
	s := NewServer(table, cfg)
	t.Cleanup(s.Close)
	if err := s.add(context.Background(), c, netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		t.Fatal(err)
	}
	return s, s.lookupServed(c.Container).socks.udp[0].LocalAddr().String()
}

// ask sends one query and returns the answer.
func query(t *testing.T, addr, network, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	r, err := tryQuery(addr, network, name, qtype, 3*time.Second)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, mdns.TypeToString[qtype], network, err)
	}
	return r
}

func tryQuery(addr, network, name string, qtype uint16, timeout time.Duration) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Client{Net: network, Timeout: timeout}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// upstream is a test resolver on 127.0.0.1 (UDP and TCP on one port) that counts what it receives
// and answers with handler.
type upstream struct {
	addr     netip.AddrPort
	udp, tcp atomic.Int64
}

func startUpstream(t *testing.T, handler func(tcp bool, q *mdns.Msg) *mdns.Msg) *upstream {
	t.Helper()
	u := &upstream{}
	var pc net.PacketConn
	var l net.Listener
	for try := 0; ; try++ { // one port for UDP and TCP: another one when TCP's is taken
		var err error
		if pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		u.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		if l, err = net.Listen("tcp4", u.addr.String()); err == nil {
			break
		}
		pc.Close()
		if try == 10 {
			t.Fatal(err)
		}
	}
	h := func(tcp bool) mdns.HandlerFunc {
		return func(w mdns.ResponseWriter, q *mdns.Msg) {
			if tcp {
				u.tcp.Add(1)
			} else {
				u.udp.Add(1)
			}
			if r := handler(tcp, q); r != nil {
				w.WriteMsg(r)
			}
		}
	}
	var started sync.WaitGroup
	started.Add(2)
	us := &mdns.Server{PacketConn: pc, Handler: h(false), NotifyStartedFunc: started.Done}
	ts := &mdns.Server{Listener: l, Handler: h(true), NotifyStartedFunc: started.Done}
	go us.ActivateAndServe()
	go ts.ActivateAndServe()
	started.Wait()
	t.Cleanup(func() { us.Shutdown(); ts.Shutdown() })
	return u
}

// blackhole is a UDP socket that reads queries and never answers; it returns the address and a
// counter of what it read.
func blackhole(t *testing.T) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var n atomic.Int64
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), &n
}

// answerA answers every A question with 192.0.2.1 (and n more TXT records, to make it big).
func answerA(n int) func(bool, *mdns.Msg) *mdns.Msg {
	return func(_ bool, q *mdns.Msg) *mdns.Msg {
		r := new(mdns.Msg)
		r.SetReply(q)
		name := q.Question[0].Name
		r.Answer = append(r.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)})
		for i := range n {
			r.Answer = append(r.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, byte(10+i))})
		}
		return r
	}
}

func addrsOf(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			out = append(out, rr.A.String())
		case *mdns.AAAA:
			out = append(out, rr.AAAA.String())
		case *mdns.PTR:
			out = append(out, rr.Ptr)
		}
	}
	return out
}
