package ovrt

import (
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
)

// capNames maps the capability names of the OCI spec to their numbers (linux/capability.h).
var capNames = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
	"CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
	"CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
	"CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17,
	"CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21,
	"CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
	"CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29,
	"CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33,
	"CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
	"CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}

// capSet is a capability bit mask.
type capSet uint64

func parseCaps(field string, names []string) (capSet, error) {
	var s capSet
	for _, n := range names {
		c, ok := capNames[strings.ToUpper(n)]
		if !ok {
			return 0, fmt.Errorf("process.capabilities.%s: unknown capability %q: %w", field, n, errdefs.ErrInvalidArgument)
		}
		s |= 1 << c
	}
	return s, nil
}

// caps are the five capability sets of a process, resolved from the spec.
type caps struct {
	bounding, effective, permitted, inheritable, ambient capSet
}

func resolveCaps(c *specs.LinuxCapabilities) (caps, error) {
	var r caps
	if c == nil {
		return r, nil
	}
	var err error
	for _, f := range []struct {
		name  string
		names []string
		dst   *capSet
	}{
		{"bounding", c.Bounding, &r.bounding}, {"effective", c.Effective, &r.effective},
		{"permitted", c.Permitted, &r.permitted}, {"inheritable", c.Inheritable, &r.inheritable},
		{"ambient", c.Ambient, &r.ambient},
	} {
		if *f.dst, err = parseCaps(f.name, f.names); err != nil {
			return r, err
		}
	}
	return r, nil
}

// lastCap is the highest capability the running kernel knows.
func lastCap() uint {
	var last uint = 40
	if b, err := readSmall("/proc/sys/kernel/cap_last_cap"); err == nil {
		var v uint
		if _, err := fmt.Sscanf(b, "%d", &v); err == nil {
			last = v
		}
	}
	return last
}

// dropBounding removes from the bounding set every capability not in keep. It needs CAP_SETPCAP, so
// it runs before the user switch.
func dropBounding(keep capSet, last uint) error {
	for c := uint(0); c <= last; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// applyCaps sets the effective, permitted and inheritable sets of the calling thread, then raises
// the ambient ones the kernel allows. It must run on the thread that will execve.
//
// The kernel raises an ambient capability only if it is permitted and inheritable too. runc 1.1
// ignores every ambient capability it cannot raise (its capability library drops the errors of
// PR_CAP_AMBIENT_RAISE), and `runc spec` lists ambient capabilities with no inheritable ones (since
// CVE-2022-29162): so ovrt raises those it can and leaves the others out instead of failing the
// container.
func applyCaps(c caps, last uint) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[1].Effective = uint32(c.effective), uint32(c.effective>>32)
	data[0].Permitted, data[1].Permitted = uint32(c.permitted), uint32(c.permitted>>32)
	data[0].Inheritable, data[1].Inheritable = uint32(c.inheritable), uint32(c.inheritable>>32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	raise := raisableAmbient(c)
	for n := uint(0); n <= last; n++ {
		if raise&(1<<n) != 0 {
			// EPERM (securebits forbid it) or EINVAL (a kernel without ambient capabilities):
			// left out, as runc does.
			_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(n), 0, 0)
		}
	}
	return nil
}

// raisableAmbient is the part of the ambient set the kernel can raise: capabilities that are
// permitted and inheritable too.
func raisableAmbient(c caps) capSet { return c.ambient & c.permitted & c.inheritable }
