package spoof

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	ACK = 0x10
)

// Packet is one IPv4 TCP or UDP packet in an Ethernet frame.
type Packet struct {
	SrcMAC, DstMAC   net.HardwareAddr
	Src, Dst         netip.Addr
	Proto            int // unix.IPPROTO_TCP or unix.IPPROTO_UDP
	SrcPort, DstPort uint16
	Flags            uint8  // TCP only
	Seq, Ack         uint32 // TCP only
	Payload          []byte
}

// Frame encodes the packet, checksums included.
func (p Packet) Frame() []byte {
	var l4 []byte
	if p.Proto == unix.IPPROTO_TCP {
		l4 = make([]byte, 20, 20+len(p.Payload))
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		binary.BigEndian.PutUint32(l4[4:], p.Seq)
		binary.BigEndian.PutUint32(l4[8:], p.Ack)
		l4[12] = 5 << 4 // data offset: 5 words
		l4[13] = p.Flags
		binary.BigEndian.PutUint16(l4[14:], 64240) // window
		l4 = append(l4, p.Payload...)
	} else {
		l4 = make([]byte, 8, 8+len(p.Payload))
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(p.Payload)))
		l4 = append(l4, p.Payload...)
	}
	src, dst := p.Src.As4(), p.Dst.As4()
	pseudo := append(append(append([]byte{}, src[:]...), dst[:]...), 0, byte(p.Proto), byte(len(l4)>>8), byte(len(l4)))
	sum := checksum(append(pseudo, l4...))
	if p.Proto == unix.IPPROTO_TCP {
		binary.BigEndian.PutUint16(l4[16:], sum)
	} else {
		if sum == 0 {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], sum)
	}
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], uint16(time.Now().UnixNano()))
	ip[6] = 0x40 // don't fragment
	ip[8] = 64   // TTL
	ip[9] = byte(p.Proto)
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	return append(ether(p.DstMAC, p.SrcMAC, unix.ETH_P_IP), append(ip, l4...)...)
}

func ether(dst, src net.HardwareAddr, typ uint16) []byte {
	b := make([]byte, 14)
	copy(b[0:], dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], typ)
	return b
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// Parse decodes an Ethernet frame carrying IPv4 TCP or UDP; ok is false for anything else.
func Parse(frame []byte) (p Packet, ok bool) {
	if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:]) != unix.ETH_P_IP {
		return p, false
	}
	p.DstMAC, p.SrcMAC = net.HardwareAddr(frame[0:6]), net.HardwareAddr(frame[6:12])
	ip := frame[14:]
	hl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[0]>>4 != 4 || hl < 20 || total < hl || total > len(ip) {
		return p, false
	}
	p.Src, p.Dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	p.Proto = int(ip[9])
	l4 := ip[hl:total]
	switch {
	case p.Proto == unix.IPPROTO_TCP && len(l4) >= 20:
		p.Seq, p.Ack, p.Flags = binary.BigEndian.Uint32(l4[4:]), binary.BigEndian.Uint32(l4[8:]), l4[13]
		if off := int(l4[12]>>4) * 4; off <= len(l4) {
			p.Payload = l4[off:]
		}
	case p.Proto == unix.IPPROTO_UDP && len(l4) >= 8:
		p.Payload = l4[8:]
	default:
		return p, false
	}
	p.SrcPort, p.DstPort = binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
	return p, true
}

// Socket is an AF_PACKET socket on one interface of the namespace it was opened in. Opening one
// needs CAP_NET_RAW in that namespace, which a container has by default.
type Socket struct {
	fd      int
	ifindex int
	MAC     net.HardwareAddr // the interface's
	Addr    netip.Addr       // the interface's first IPv4 address
}

// Open opens a socket on the interface ifname of the calling thread's network namespace.
func Open(ifname string) (*Socket, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	s := &Socket{ifindex: ifi.Index, MAC: ifi.HardwareAddr}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			s.Addr, _ = netip.AddrFromSlice(n.IP.To4())
			break
		}
	}
	s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(s.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: s.ifindex}); err != nil {
		unix.Close(s.fd)
		return nil, fmt.Errorf("bind AF_PACKET socket to %s: %w", ifname, err)
	}
	return s, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Close closes the socket.
func (s *Socket) Close() error { return unix.Close(s.fd) }

// Send sends a whole Ethernet frame.
func (s *Socket) Send(frame []byte) error {
	return unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: s.ifindex})
}

// Wait returns the first frame received within timeout for which match is true, and whether there
// was one. Frames the socket sends itself are skipped.
func (s *Socket) Wait(timeout time.Duration, match func([]byte) bool) ([]byte, bool) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, false
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, false
		}
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return nil, false
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if match(buf[:n]) {
			return append([]byte(nil), buf[:n]...), true
		}
	}
}

// Resolve asks for ip's MAC with ARP, as the container's kernel would.
func (s *Socket) Resolve(ip netip.Addr) (net.HardwareAddr, error) {
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	arp := make([]byte, 28)
	binary.BigEndian.PutUint16(arp[0:], 1) // Ethernet
	binary.BigEndian.PutUint16(arp[2:], unix.ETH_P_IP)
	arp[4], arp[5] = 6, 4
	binary.BigEndian.PutUint16(arp[6:], 1) // request
	copy(arp[8:], s.MAC)
	src, dst := s.Addr.As4(), ip.As4()
	copy(arp[14:], src[:])
	copy(arp[24:], dst[:])
	for try := 0; try < 3; try++ {
		if err := s.Send(append(ether(bcast, s.MAC, unix.ETH_P_ARP), arp...)); err != nil {
			return nil, err
		}
		reply, ok := s.Wait(time.Second, func(f []byte) bool {
			return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_ARP &&
				binary.BigEndian.Uint16(f[20:]) == 2 && [4]byte(f[28:32]) == dst
		})
		if ok {
			return net.HardwareAddr(reply[22:28]), nil
		}
	}
	return nil, fmt.Errorf("no ARP answer for %s", ip)
}
