//go:build !linux

package dns

import (
	"errors"
	"net"
	"net/netip"
)

// sockets are what a served container's resolver listens on.
type sockets struct {
	udp []*net.UDPConn
	tcp *net.TCPListener
}

func openSockets(netns string, addr netip.AddrPort) (*sockets, error) {
	return nil, errors.New("the embedded resolver needs Linux network namespaces")
}

func (s *sockets) close() {}

func (s *Server) serveUDP(sv *served, conn *net.UDPConn) {}

type nsIdentity struct{}

func netnsIdentity(path string) nsIdentity { return nsIdentity{} }
