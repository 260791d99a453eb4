package dns

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

const (
	maxTCPConns = 32               // per container; more are closed at once
	tcpIdle     = 10 * time.Second // a connection without a query for this long is closed
)

// tcpConns tracks a served container's TCP connections, so that Remove closes them.
type tcpConns struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (t *tcpConns) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || len(t.conns) >= maxTCPConns {
		return false
	}
	if t.conns == nil {
		t.conns = map[net.Conn]struct{}{}
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *tcpConns) remove(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
}

func (t *tcpConns) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.conns = nil
}

// serveTCP accepts a served container's TCP connections until its listener is closed.
func (s *Server) serveTCP(sv *served) {
	for {
		c, err := sv.socks.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.logs.note(logSocket, "resolver accept failed", "container", sv.id, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !sv.tcp.add(c) {
			s.logs.note(logTCPLimit, "a container opened too many TCP connections to the resolver; closing the new ones", "container", sv.id, "max", maxTCPConns)
			c.Close()
			continue
		}
		s.wg.Go(func() {
			defer sv.tcp.remove(c)
			defer c.Close()
			s.serveTCPConn(sv, c)
		})
	}
}

// serveTCPConn answers the queries of one connection, in order.
func (s *Server) serveTCPConn(sv *served, c net.Conn) {
	sc := &scratch{}
	var lenb [2]byte
	buf := make([]byte, 0, 512)
	for {
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, lenb[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(lenb[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		cfg := sv.cfg.Load()
		resp, act, _ := s.handle(buf[:0], cfg, sc, q, true)
		if act == actForward {
			resp = s.forwardSync(cfg, q, true, mdns.MaxMsgSize)
		}
		if len(resp) == 0 {
			continue
		}
		out := make([]byte, 2, 2+len(resp))
		binary.BigEndian.PutUint16(out, uint16(len(resp)))
		c.SetWriteDeadline(time.Now().Add(tcpIdle))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}
