package spec

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
)

// allCaps are the capability names of linux/capability.h, in number order (CAP_CHOWN is 0).
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// DefaultCapabilities are the capabilities Docker gives a container (CapEff 0x00000000a80425fb).
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// AllCapabilities returns every capability the running kernel knows (up to
// /proc/sys/kernel/cap_last_cap), as --privileged grants them.
func AllCapabilities() []string {
	last := len(allCaps) - 1
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n < last {
			last = n
		}
	}
	return slices.Clone(allCaps[:last+1])
}

// normalizeCap turns "net_admin", "NET_ADMIN" or "CAP_NET_ADMIN" into "CAP_NET_ADMIN"; "all" into
// "ALL". It reports whether the name is known.
func normalizeCap(name string) (string, bool) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if n == "ALL" {
		return n, true
	}
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	return n, slices.Contains(allCaps, n)
}

// capabilities applies Docker's --cap-add/--cap-drop rules to base: add ALL grants every
// capability but those dropped; drop ALL keeps only those added; otherwise base minus drops plus
// adds. Unknown names are an error naming them all.
func capabilities(base, add, drop []string) ([]string, error) {
	var unknown []string
	norm := func(names []string) []string {
		var out []string
		for _, n := range names {
			c, ok := normalizeCap(n)
			if !ok {
				unknown = append(unknown, strconv.Quote(n))
				continue
			}
			out = append(out, c)
		}
		return out
	}
	addN, dropN := norm(add), norm(drop)
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown capabilities %s: use names such as NET_ADMIN or CAP_NET_ADMIN (see capabilities(7)): %w", strings.Join(unknown, ", "), errdefs.ErrInvalidArgument)
	}
	minus := func(set, drop []string) []string {
		var out []string
		for _, c := range set {
			if !slices.Contains(drop, c) && !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
		return out
	}
	switch {
	case slices.Contains(addN, "ALL"):
		return minus(AllCapabilities(), dropN), nil
	case slices.Contains(dropN, "ALL"):
		return minus(addN, nil), nil
	}
	return minus(append(minus(base, dropN), addN...), nil), nil
}
