package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// sockets are what a served container's resolver listens on.
type sockets struct {
	udp []*net.UDPConn // udpSockets of them on one address (SO_REUSEPORT: the kernel spreads clients)
	tcp *net.TCPListener
}

// udpSockets is how many UDP sockets share a container's address, so that two cores can answer one
// busy container (clients are spread by their source port).
const udpSockets = 2

// openSockets opens the resolver's sockets at addr inside the network namespace at netns ("": the
// caller's own). A namespace is entered on a locked OS thread that exits afterwards, so no other code
// ever runs in it; the sockets stay in the namespace they were made in. lo is brought up first, since
// 127.0.0.11 cannot be bound while it is down.
func openSockets(netns string, addr netip.AddrPort) (*sockets, error) {
	if netns == "" {
		return listen(addr)
	}
	var s *sockets
	err := inNetns(netns, func() error {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("network namespace %s: bring lo up: %w", netns, err)
		}
		var err error
		s, err = listen(addr)
		return err
	})
	return s, err
}

// inNetns runs fn on a fresh OS thread switched into the network namespace at path. The thread is
// never handed back to the Go scheduler (it ends with its goroutine), so no other code runs in it.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		f, err := os.Open(path)
		if err != nil {
			errc <- fmt.Errorf("open network namespace %s: %w", path, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// nsIdentity tells network namespaces apart: the device and inode of their nsfs file.
type nsIdentity struct{ dev, ino uint64 }

// netnsIdentity is the identity of the namespace at path (zero when it cannot be read: Add then fails
// to enter it anyway).
func netnsIdentity(path string) nsIdentity {
	var st unix.Stat_t
	if path == "" || unix.Stat(path, &st) != nil {
		return nsIdentity{}
	}
	return nsIdentity{uint64(st.Dev), st.Ino}
}

// loopbackUp sets lo up in the current thread's network namespace if it is down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// listen opens the UDP sockets and the TCP listener on addr in the current thread's namespace. With
// port 0 (tests), the first UDP socket picks the port and the others follow it (again with another
// port when that one is taken for TCP).
func listen(addr netip.AddrPort) (*sockets, error) {
	for try := 0; ; try++ {
		s, err := listenOnce(addr)
		if err == nil || addr.Port() != 0 || try == 10 {
			return s, err
		}
	}
}

func listenOnce(addr netip.AddrPort) (*sockets, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	s := &sockets{}
	for range udpSockets {
		pc, err := lc.ListenPacket(context.Background(), "udp4", addr.String())
		if err != nil {
			s.close()
			return nil, fmt.Errorf("listen on %s/udp: %w", addr, err)
		}
		s.udp = append(s.udp, pc.(*net.UDPConn))
		addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	l, err := net.Listen("tcp4", addr.String())
	if err != nil {
		s.close()
		return nil, fmt.Errorf("listen on %s/tcp: %w", addr, err)
	}
	s.tcp = l.(*net.TCPListener)
	return s, nil
}

func (s *sockets) close() {
	for _, c := range s.udp {
		c.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
}
