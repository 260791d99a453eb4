package membership

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ICMP is a Prober that sends ICMP echo requests to a host's underlay address: the host's kernel
// answers them with or without an agent running, and not at all when the host is down or cut off.
// Each request carries a random 8-byte nonce that its reply must echo, so that nobody on the underlay
// can keep a dead host's entries alive by forging replies without seeing the requests.
//
// It needs a raw ICMP socket (root, or CAP_NET_RAW) in the host's network namespace: open it with
// NewICMP from a thread of that namespace, before anything moves threads around.
type ICMP struct {
	conn net.PacketConn
	id   uint16
	seq  uint16

	mu      sync.Mutex
	waiting map[uint64]chan struct{} // by nonce
	done    chan struct{}
}

// NewICMP opens the raw ICMP socket and starts reading replies; Close stops it.
func NewICMP() (*ICMP, error) {
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("open a raw ICMP socket for the data plane probe (needs root or CAP_NET_RAW): %w", err)
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	p := &ICMP{conn: c, id: binary.BigEndian.Uint16(b[:]), waiting: map[uint64]chan struct{}{}, done: make(chan struct{})}
	go p.read()
	return p, nil
}

// Close closes the socket; probes under way report no answer.
func (p *ICMP) Close() error {
	err := p.conn.Close()
	<-p.done
	return err
}

// Probe sends an echo request to addr and reports whether its reply came within timeout.
func (p *ICMP) Probe(ctx context.Context, addr netip.Addr, timeout time.Duration) bool {
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	nonce := binary.BigEndian.Uint64(nb[:])
	ch := make(chan struct{}, 1)
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.waiting[nonce] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, nonce)
		p.mu.Unlock()
	}()
	msg := echo(8, p.id, seq, nb[:])
	if _, err := p.conn.WriteTo(msg, &net.IPAddr{IP: addr.AsSlice()}); err != nil {
		return false
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// read matches echo replies (the IPv4 header is stripped by the socket) to the probes waiting.
func (p *ICMP) read() {
	defer close(p.done)
	buf := make([]byte, 1500)
	for {
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		b := buf[:n]
		if n < 16 || b[0] != 0 || b[1] != 0 || binary.BigEndian.Uint16(b[4:6]) != p.id {
			continue // not an echo reply to this prober
		}
		p.mu.Lock()
		ch := p.waiting[binary.BigEndian.Uint64(b[8:16])]
		p.mu.Unlock()
		if ch != nil {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// echo builds an ICMP echo message (type 8 request, 0 reply) with its checksum.
func echo(typ byte, id, seq uint16, data []byte) []byte {
	b := []byte{typ, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, seq)
	b = append(b, data...)
	binary.BigEndian.PutUint16(b[2:4], checksum(b))
	return b
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
