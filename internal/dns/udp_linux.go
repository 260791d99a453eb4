package dns

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	batchSize = 16   // datagrams read (recvmmsg) and answered (sendmmsg) per system call
	maxQuery  = 1024 // bytes of a UDP query read; longer ones are dropped (real queries are < 300)
)

// mmsghdr is struct mmsghdr of recvmmsg(2)/sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// udpBatch is the memory of one recvmmsg/sendmmsg round; pooled, so an idle socket holds none.
type udpBatch struct {
	in     [batchSize][maxQuery]byte
	names  [batchSize][unix.SizeofSockaddrInet6]byte
	iovIn  [batchSize]unix.Iovec
	hdrIn  [batchSize]mmsghdr
	out    [batchSize][]byte
	iovOut [batchSize]unix.Iovec
	hdrOut [batchSize]mmsghdr
	sc     scratch
}

var batchPool = sync.Pool{New: func() any {
	b := &udpBatch{}
	for i := range b.hdrIn {
		b.iovIn[i].Base = &b.in[i][0]
		b.hdrIn[i].hdr.Name = &b.names[i][0]
		b.hdrIn[i].hdr.Iov = &b.iovIn[i]
		b.hdrIn[i].hdr.SetIovlen(1)
		b.out[i] = make([]byte, 0, 512)
		b.hdrOut[i].hdr.Iov = &b.iovOut[i]
		b.hdrOut[i].hdr.SetIovlen(1)
	}
	b.sc.addrs = make([]netip.Addr, 0, 64)
	return b
}}

func mmsg(trap uintptr, fd uintptr, h []mmsghdr) (int, unix.Errno) {
	n, _, errno := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&h[0])), uintptr(len(h)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}

// serveUDP answers the queries arriving on one UDP socket until it is closed. It waits for the
// socket in Go's poller and then reads and answers up to batchSize datagrams per system call.
func (s *Server) serveUDP(sv *served, conn *net.UDPConn) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	for {
		if err := rc.Read(func(fd uintptr) bool { return s.udpRound(sv, conn, fd) }); err != nil {
			return // closed
		}
	}
}

// udpRound is one read-and-answer round; false means "nothing to read, wait for the socket".
func (s *Server) udpRound(sv *served, conn *net.UDPConn, fd uintptr) bool {
	b := batchPool.Get().(*udpBatch)
	defer batchPool.Put(b)
	for i := range b.hdrIn {
		b.hdrIn[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.hdrIn[i].hdr.Flags = 0
		b.iovIn[i].SetLen(maxQuery)
	}
	n, errno := mmsg(unix.SYS_RECVMMSG, fd, b.hdrIn[:])
	if errno != 0 {
		if errno != unix.EAGAIN && errno != unix.EINTR {
			s.logs.note(logSocket, "resolver socket read failed", "container", sv.id, "err", errno)
		}
		return false
	}
	c := sv.cfg.Load()
	m := 0
	for i := 0; i < n; i++ {
		h := &b.hdrIn[i]
		if h.hdr.Flags&unix.MSG_TRUNC != 0 {
			s.logs.note(logOversize, "a UDP query longer than the read buffer was dropped", "container", sv.id, "max_bytes", maxQuery)
			continue
		}
		q := b.in[i][:h.n]
		resp, act, limit := s.handle(b.out[m][:0], c, &b.sc, q, false)
		if act == actForward {
			resp = s.forwardUDP(c, conn, q, sockaddrPort(b.names[i][:h.hdr.Namelen]), limit)
		}
		if len(resp) == 0 {
			continue
		}
		if cap(resp) <= 4096 {
			b.out[m] = resp[:0] // keep a grown buffer, not a huge one
		}
		o := &b.hdrOut[m]
		o.hdr.Name = &b.names[i][0]
		o.hdr.Namelen = h.hdr.Namelen
		b.iovOut[m].Base = &resp[0]
		b.iovOut[m].SetLen(len(resp))
		m++
	}
	for sent := 0; sent < m; {
		k, errno := mmsg(unix.SYS_SENDMMSG, fd, b.hdrOut[sent:m])
		if errno != 0 {
			if errno != unix.EINTR {
				s.logs.note(logSocket, "resolver socket write failed", "container", sv.id, "err", errno)
				break
			}
			continue
		}
		sent += k
	}
	return true
}

// sockaddrPort decodes a struct sockaddr_in or sockaddr_in6.
func sockaddrPort(b []byte) netip.AddrPort {
	if len(b) < 8 {
		return netip.AddrPort{}
	}
	port := binary.BigEndian.Uint16(b[2:4])
	switch *(*uint16)(unsafe.Pointer(&b[0])) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case unix.AF_INET6:
		if len(b) >= 24 {
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), port)
		}
	}
	return netip.AddrPort{}
}
