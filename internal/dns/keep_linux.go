package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// Keeping the sockets across an agent restart (docs/dns.md, "Agent restarts"): the agent gives copies
// of a container's sockets (Files) to a process that outlives it (the container's shim), which only
// holds them. While no agent runs, the sockets stay bound: a query waits in the socket's queue instead
// of being refused. The next agent takes the copies back and serves them (Adopt), and the queries
// that waited are answered.

// maxKeptFiles bounds the files Adopt takes: the UDP sockets and the TCP listener.
const maxKeptFiles = udpSockets + 1

// Files returns copies (new descriptors of the same sockets) of the sockets serving container: its
// UDP sockets, then its TCP listener. The caller owns and closes them; closing them does not stop
// the server. A socket stays bound while any copy is open. Never call Fd on them (nor pass them as
// exec.Cmd.ExtraFiles, which does): it makes the sockets blocking, under the server too; use
// SyscallConn.
func (s *Server) Files(container string) ([]*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.clients[container]
	if sv == nil {
		return nil, fmt.Errorf("dns: the sockets of container %s: it is not served", container)
	}
	var files []*os.File
	fail := func(err error) ([]*os.File, error) {
		closeFiles(files)
		return nil, fmt.Errorf("dns: copy the sockets of container %s: %w", container, err)
	}
	for _, u := range sv.socks.udp {
		f, err := u.File()
		if err != nil {
			return fail(err)
		}
		files = append(files, f)
	}
	f, err := sv.socks.tcp.File()
	if err != nil {
		return fail(err)
	}
	return append(files, f), nil
}

// Adopt starts serving c on sockets an earlier server made (copies from Files, kept by another
// process meanwhile), instead of opening new ones: queries waiting in them are answered. It checks
// first that each file is what Files gives, made in c's namespace: an IPv4 UDP socket or listening
// TCP socket bound to 127.0.0.11:53, in the namespace at c.Netns (SIOCGSKNS), at least one UDP socket
// and exactly one listener. On error nothing is served and the caller falls back to Add. Adopt does
// not close files (it serves copies of them); a container already served is an error.
func (s *Server) Adopt(ctx context.Context, c Client, files []*os.File) error {
	return s.adopt(ctx, c, files, netip.AddrPortFrom(netip.MustParseAddr(Address), Port))
}

func (s *Server) adopt(ctx context.Context, c Client, files []*os.File, addr netip.AddrPort) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.Container == "" || c.Netns == "" {
		return fmt.Errorf("dns: adopt the sockets of container %q in namespace %q: both the container ID and its network namespace are needed", c.Container, c.Netns)
	}
	id := netnsIdentity(c.Netns)
	if id == (nsIdentity{}) {
		return fmt.Errorf("dns: adopt the sockets of container %s: its network namespace %s cannot be read", c.Container, c.Netns)
	}
	socks, err := adoptSockets(files, id, addr)
	if err != nil {
		return fmt.Errorf("dns: adopt the sockets of container %s: %w", c.Container, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		socks.close()
		return errors.New("dns: the resolver is closed")
	}
	for other, sv := range s.clients {
		if other == c.Container || sv.nsID == id {
			socks.close()
			return fmt.Errorf("dns: adopt the sockets of container %s: its namespace is already served (for %s)", c.Container, other)
		}
	}
	s.register(c, id, socks)
	return nil
}

// adoptSockets checks files (see Adopt) and makes the server's sockets of them (new descriptors).
func adoptSockets(files []*os.File, ns nsIdentity, addr netip.AddrPort) (*sockets, error) {
	if len(files) == 0 || len(files) > maxKeptFiles {
		return nil, fmt.Errorf("%d files given, want 2 to %d (UDP sockets and a TCP listener)", len(files), maxKeptFiles)
	}
	socks := &sockets{}
	for i, f := range files {
		typ, err := checkSocket(f, ns, addr)
		if err == nil && typ == unix.SOCK_STREAM && socks.tcp != nil {
			err = errors.New("a second TCP listener")
		}
		if err != nil {
			socks.close()
			return nil, fmt.Errorf("file %d: %w", i, err)
		}
		if typ == unix.SOCK_DGRAM {
			var pc net.PacketConn
			if pc, err = net.FilePacketConn(f); err == nil {
				socks.udp = append(socks.udp, pc.(*net.UDPConn))
			}
		} else {
			var l net.Listener
			if l, err = net.FileListener(f); err == nil {
				socks.tcp = l.(*net.TCPListener)
			}
		}
		if err != nil {
			socks.close()
			return nil, fmt.Errorf("file %d: %w", i, err)
		}
	}
	if len(socks.udp) == 0 || socks.tcp == nil {
		socks.close()
		return nil, fmt.Errorf("%d UDP sockets and %t for a TCP listener, want both", len(socks.udp), socks.tcp != nil)
	}
	return socks, nil
}

// checkSocket returns the type (SOCK_DGRAM or SOCK_STREAM) of the socket f after checking that it is
// one the resolver opened: IPv4, bound to addr, in the namespace ns, listening if a stream.
func checkSocket(f *os.File, ns nsIdentity, addr netip.AddrPort) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var typ int
	var cerr error
	err = rc.Control(func(fd uintptr) { typ, cerr = checkSocketFd(int(fd), ns, addr) })
	if err != nil {
		return 0, err
	}
	return typ, cerr
}

func checkSocketFd(fd int, ns nsIdentity, addr netip.AddrPort) (int, error) {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return 0, fmt.Errorf("not a socket: %w", err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return 0, err
	}
	if dom != unix.AF_INET || (typ != unix.SOCK_DGRAM && typ != unix.SOCK_STREAM) {
		return 0, fmt.Errorf("socket of domain %d and type %d, want IPv4 UDP or TCP", dom, typ)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return 0, fmt.Errorf("socket bound to %v, want %v", sa, addr)
	}
	if got := netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port)); got != addr {
		return 0, fmt.Errorf("socket bound to %v, want %v", got, addr)
	}
	if typ == unix.SOCK_STREAM {
		if l, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || l != 1 {
			return 0, errors.New("a TCP socket that is not listening")
		}
	}
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		return 0, fmt.Errorf("the network namespace of the socket: %w", err)
	}
	defer unix.Close(nsfd)
	var st unix.Stat_t
	if err := unix.Fstat(nsfd, &st); err != nil {
		return 0, err
	}
	if (nsIdentity{uint64(st.Dev), st.Ino}) != ns {
		return 0, errors.New("socket of another network namespace than the container's")
	}
	return typ, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
