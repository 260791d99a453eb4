package spoof

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// capNumbers are the capabilities a container may hold that the attack tests use, by name.
var capNumbers = map[string]int{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "CAP_FSETID": unix.CAP_FSETID,
	"CAP_FOWNER": unix.CAP_FOWNER, "CAP_MKNOD": unix.CAP_MKNOD, "CAP_NET_RAW": unix.CAP_NET_RAW,
	"CAP_SETGID": unix.CAP_SETGID, "CAP_SETUID": unix.CAP_SETUID, "CAP_SETFCAP": unix.CAP_SETFCAP,
	"CAP_SETPCAP": unix.CAP_SETPCAP, "CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT, "CAP_KILL": unix.CAP_KILL, "CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"CAP_NET_ADMIN": unix.CAP_NET_ADMIN,
}

// As runs f as root in a container runs: on an OS thread of its own that has entered the network
// namespace at netns and holds only the capabilities caps (bounding, permitted and effective sets;
// names as in internal/ovrt/spec.DefaultCapabilities), so that programs f executes hold no more.
// The thread is discarded afterwards (its goroutine ends locked), never reused by the Go runtime.
func As(netns string, caps []string, f func() error) error {
	keep := uint64(0)
	for _, c := range caps {
		n, ok := capNumbers[c]
		if !ok {
			return fmt.Errorf("spoof: unknown capability %q", c)
		}
		keep |= 1 << n
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		done <- func() error {
			fd, err := os.Open(netns)
			if err != nil {
				return err
			}
			err = unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET)
			fd.Close()
			if err != nil {
				return fmt.Errorf("spoof: enter %s: %w", netns, err)
			}
			if err := dropCaps(keep); err != nil {
				return err
			}
			return f()
		}()
	}()
	return <-done
}

// dropCaps limits the calling thread to the capabilities in keep.
func dropCaps(keep uint64) error {
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if keep&(1<<c) == 0 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
				return fmt.Errorf("spoof: drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("spoof: capset: %w", err)
	}
	return nil
}
