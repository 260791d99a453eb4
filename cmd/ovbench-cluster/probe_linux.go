package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The probe. A container "reaches" another when a datagram it sends arrives and the other's kernel
// answers: a UDP datagram to a closed port (9, discard: nothing listens in a busybox container running
// sleep) comes back as ICMP port unreachable, which a connected UDP socket reports as ECONNREFUSED.
// That needs no listener in the new container (so the container's own start-up is not measured) and
// it cannot be confused with "not there yet", which the socket reports as EHOSTUNREACH (the address
// did not resolve) or as silence. Port-unreachable errors are rate limited per destination, but only
// after a burst, and the first one is all the probe needs.
//
// The probe resolves the new address with ARP, like any client: on the other host, ARP is answered by
// the VXLAN device's proxy from the neighbour entry the agent programs, so the probe measures the
// whole path (controller watch, agent, kernel entries). A probe with a static neighbour entry would
// not: its frames would be flooded to every VTEP of the network and reach the container before the
// other host's agent knew of it. The probing container's ARP retransmit time is cut to 5 ms (it is
// 1 s by default), so an unanswered ARP request delays the probe by at most that.

const (
	probePort     = 9
	probeInterval = time.Millisecond
	arpRetransMS  = "5"
)

// fastARP makes the container re-send unanswered ARP requests every 5 ms.
func fastARP(c container) error {
	out, err := exec.Command("nsenter", "--net="+c.netns, "sysctl", "-qw",
		"net.ipv4.neigh."+c.ifName+".retrans_time_ms="+arpRetransMS).CombinedOutput()
	if err != nil {
		return fmt.Errorf("set the ARP retransmit time in container %s: %v: %s", c.name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// prober sends datagrams from one container's network namespace to one address.
type prober struct{ fd int }

// newProber opens a UDP socket in the network namespace at netnsPath, connected to dst. A socket
// belongs to the namespace it was made in, whatever thread uses it later.
func newProber(netnsPath string, dst netip.Addr) (*prober, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, switched to another namespace, ends with the goroutine.
		runtime.LockOSThread()
		fd, err := func() (int, error) {
			ns, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return -1, fmt.Errorf("open network namespace %s: %w", netnsPath, err)
			}
			defer unix.Close(ns)
			if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
				return -1, fmt.Errorf("enter network namespace %s: %w", netnsPath, err)
			}
			s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return -1, err
			}
			if err := unix.Connect(s, &unix.SockaddrInet4{Port: probePort, Addr: dst.As4()}); err != nil {
				unix.Close(s)
				return -1, fmt.Errorf("connect a UDP socket to %s in %s: %w", dst, netnsPath, err)
			}
			return s, nil
		}()
		ch <- result{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	return &prober{fd: r.fd}, nil
}

func (p *prober) Close() error { return unix.Close(p.fd) }

var errNotReached = errors.New("not reached")

// reach sends a datagram every millisecond until the destination answers, and returns when the answer
// arrived. It gives up at deadline or when ctx ends.
func (p *prober) reach(ctx context.Context, deadline time.Time) (time.Time, error) {
	runtime.LockOSThread() // poll blocks a thread anyway; keep it
	defer runtime.UnlockOSThread()
	buf := make([]byte, 64)
	pfd := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		now := time.Now()
		if now.After(deadline) || ctx.Err() != nil {
			return time.Time{}, errNotReached
		}
		if _, err := unix.Write(p.fd, []byte("ov")); errors.Is(err, unix.ECONNREFUSED) {
			return time.Now(), nil
		}
		for next := now.Add(probeInterval); time.Now().Before(next); {
			n, err := unix.Poll(pfd, 1)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return time.Time{}, fmt.Errorf("poll: %w", err)
			}
			if n == 0 {
				continue
			}
			if n, err := unix.Read(p.fd, buf); n > 0 || errors.Is(err, unix.ECONNREFUSED) {
				return time.Now(), nil // refused, or (if something listened) answered
			}
			// EHOSTUNREACH (ARP failed), EAGAIN: not there yet.
		}
	}
}
