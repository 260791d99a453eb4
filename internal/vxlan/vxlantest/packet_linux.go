package vxlantest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Crafted is a VXLAN packet as an attacker writes it: the outer IPv4/UDP header (any source address),
// the 8-byte VXLAN header with VNI, and an inner Ethernet/IPv4/UDP frame to a container.
type Crafted struct {
	OuterSrc, OuterDst netip.Addr
	Port               int    // outer UDP destination port (4789)
	VNI                uint32 // 24 bits
	InnerDstMAC        net.HardwareAddr
	InnerSrc, InnerDst netip.Addr
	InnerPort          int    // inner UDP destination port
	Payload            []byte // inner UDP payload
}

// Bytes returns the whole outer IPv4 packet.
func (c Crafted) Bytes() []byte {
	inner := make([]byte, 14, 14+28+len(c.Payload))
	copy(inner[0:6], c.InnerDstMAC)
	copy(inner[6:12], net.HardwareAddr{0x02, 0xba, 0xd0, 0x00, 0x00, 0x01})
	binary.BigEndian.PutUint16(inner[12:14], 0x0800)
	inner = append(inner, IPv4UDP(c.InnerSrc, c.InnerDst, 40000, c.InnerPort, c.Payload)...)
	vx := make([]byte, 8, 8+len(inner))
	vx[0] = 0x08 // I flag: the VNI is valid
	binary.BigEndian.PutUint32(vx[4:8], c.VNI<<8)
	return IPv4UDP(c.OuterSrc, c.OuterDst, 45000, c.Port, append(vx, inner...))
}

// IPv4UDP builds an IPv4 packet (header checksum set, TTL 64) carrying one UDP datagram (checksum 0:
// none, as IPv4 allows).
func IPv4UDP(src, dst netip.Addr, sport, dport int, payload []byte) []byte {
	b := make([]byte, 28, 28+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(28+len(payload)))
	b[8] = 64
	b[9] = unix.IPPROTO_UDP
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i : i+2]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:12], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:22], uint16(sport))
	binary.BigEndian.PutUint16(b[22:24], uint16(dport))
	binary.BigEndian.PutUint16(b[24:26], uint16(8+len(payload)))
	return append(b, payload...)
}

// SendRaw sends IPv4 packets exactly as given (source address included: IPPROTO_RAW implies
// IP_HDRINCL) from inside the namespace at path, as a process with CAP_NET_RAW there can.
func SendRaw(path string, pkts ...[]byte) error {
	return InNetns(path, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket in %s: %w", path, err)
		}
		defer unix.Close(fd)
		for _, p := range pkts {
			to := &unix.SockaddrInet4{}
			copy(to.Addr[:], p[16:20])
			if err := unix.Sendto(fd, p, 0, to); err != nil {
				return fmt.Errorf("send %d bytes to %v from %s: %w", len(p), net.IP(to.Addr[:]), path, err)
			}
		}
		return nil
	})
}
