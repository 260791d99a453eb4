package dns

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// acquire takes one of the MaxInflight slots of forwarded queries; false when none is free.
func (s *Server) acquire() bool {
	if s.busy.Add(1) > int64(s.cfg.MaxInflight) {
		s.busy.Add(-1)
		s.logs.note(logBusy, "too many forwarded queries in flight; answering SERVFAIL", "max_inflight", s.cfg.MaxInflight)
		return false
	}
	return true
}

func (s *Server) release() { s.busy.Add(-1) }

// forwardUDP forwards a query that arrived over UDP: it returns an immediate answer (SERVFAIL for a
// NoForward client or when the in-flight bound is reached), or nil when a goroutine will send the
// upstream's answer to the client through conn.
func (s *Server) forwardUDP(c *clientCfg, conn *net.UDPConn, q []byte, to netip.AddrPort, limit int) []byte {
	if c.noForward || !s.acquire() {
		return rcodeReply(q, mdns.RcodeServerFailure)
	}
	q = bytes.Clone(q)
	s.wg.Go(func() {
		defer s.release()
		if resp := s.exchange(c, q, false, limit); len(resp) > 0 {
			if _, err := conn.WriteToUDPAddrPort(resp, to); err != nil && !errors.Is(err, net.ErrClosed) {
				s.logs.note(logSocket, "resolver socket write failed", "err", err)
			}
		}
	})
	return nil
}

// forwardSync forwards a query and waits for the answer (queries over TCP).
func (s *Server) forwardSync(c *clientCfg, q []byte, tcp bool, limit int) []byte {
	if c.noForward || !s.acquire() {
		return rcodeReply(q, mdns.RcodeServerFailure)
	}
	defer s.release()
	return s.exchange(c, q, tcp, limit)
}

// exchange asks the client's upstreams (or the host's) in turn, each with an equal share of what is
// left of Config.Timeout, and returns the first answer, with the client's ID and fitted to limit
// bytes; SERVFAIL when none answers. It runs in the agent's own network namespace.
func (s *Server) exchange(c *clientCfg, q []byte, tcp bool, limit int) []byte {
	ups := c.upstreams
	if len(ups) == 0 {
		ups = s.cfg.Upstreams
	}
	if len(ups) == 0 {
		s.logs.note(logUpstream, "no upstream resolver to forward to (the host's resolv.conf names none but loopback ones, and the container has no --dns)")
		return rcodeReply(q, mdns.RcodeServerFailure)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	fq := bytes.Clone(q)
	binary.BigEndian.PutUint16(fq, uint16(rand.Uint32())) // a fresh ID: the client's is not ours to trust
	for i, up := range ups {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		actx, acancel := context.WithTimeout(ctx, left/time.Duration(len(ups)-i))
		resp, err := ask(actx, up, fq, tcp)
		acancel()
		if err == nil {
			return fit(resp, q, tcp, limit)
		}
		s.logs.note(logUpstream, "upstream resolver failed", "upstream", up.String(), "err", err)
	}
	return rcodeReply(q, mdns.RcodeServerFailure)
}

// ask sends fq to one upstream: over TCP when the client asked over TCP, else over UDP and again over
// TCP when the answer is truncated.
func ask(ctx context.Context, up netip.AddrPort, fq []byte, tcp bool) ([]byte, error) {
	if !tcp {
		resp, err := askUDP(ctx, up, fq)
		if err != nil || resp[2]&0x02 == 0 {
			return resp, err
		}
	}
	return askTCP(ctx, up, fq)
}

// dial connects to an upstream; the connection's deadline is the context's, and cancelling the
// context (Close) ends pending reads.
func dial(ctx context.Context, network string, up netip.AddrPort) (net.Conn, func(), error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, up.String())
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	return conn, func() { stop(); conn.Close() }, nil
}

func askUDP(ctx context.Context, up netip.AddrPort, fq []byte) ([]byte, error) {
	conn, done, err := dial(ctx, "udp", up)
	if err != nil {
		return nil, err
	}
	defer done()
	if _, err := conn.Write(fq); err != nil {
		return nil, err
	}
	buf := make([]byte, mdns.MaxMsgSize)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		if isAnswerTo(buf[:n], fq) {
			return bytes.Clone(buf[:n]), nil
		}
	}
}

func askTCP(ctx context.Context, up netip.AddrPort, fq []byte) ([]byte, error) {
	conn, done, err := dial(ctx, "tcp", up)
	if err != nil {
		return nil, err
	}
	defer done()
	msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(fq)), uint16(len(fq)))
	if _, err := conn.Write(append(msg, fq...)); err != nil {
		return nil, err
	}
	var lenb [2]byte
	if _, err := io.ReadFull(conn, lenb[:]); err != nil {
		return nil, err
	}
	resp := make([]byte, binary.BigEndian.Uint16(lenb[:]))
	if _, err := io.ReadFull(conn, resp); err != nil {
		return nil, err
	}
	if !isAnswerTo(resp, fq) {
		return nil, fmt.Errorf("answer over TCP does not match the query")
	}
	return resp, nil
}

// isAnswerTo: a response with the query's ID.
func isAnswerTo(resp, fq []byte) bool {
	return len(resp) >= 12 && resp[0] == fq[0] && resp[1] == fq[1] && resp[2]&0x80 != 0
}

// fit gives an upstream's answer the client's ID and, over UDP, truncates it to limit bytes (TC set,
// so that the client asks again over TCP).
func fit(resp, q []byte, tcp bool, limit int) []byte {
	copy(resp[:2], q[:2])
	if tcp || len(resp) <= limit {
		return resp
	}
	var m mdns.Msg
	if err := m.Unpack(resp); err != nil {
		return rcodeReply(q, mdns.RcodeServerFailure)
	}
	m.Truncate(limit)
	out, err := m.Pack()
	if err != nil {
		return rcodeReply(q, mdns.RcodeServerFailure)
	}
	return out
}
