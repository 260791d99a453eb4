package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
)

// Mode is how a host mounts its cgroups.
type Mode int

const (
	// None: no cgroup file system is mounted.
	None Mode = iota
	// V1: only v1 controller hierarchies (/sys/fs/cgroup/<controller>).
	V1
	// V2: one unified cgroup2 hierarchy holds every controller (most current distributions).
	V2
	// Hybrid: v1 controller hierarchies hold the controllers and a cgroup2 mount
	// (usually /sys/fs/cgroup/unified) exists beside them for process tracking.
	Hybrid
)

func (m Mode) String() string {
	switch m {
	case V1:
		return "v1"
	case V2:
		return "v2"
	case Hybrid:
		return "hybrid"
	}
	return "none"
}

// hierarchy is one mounted v1 hierarchy: its mount point and the controllers attached to it.
type hierarchy struct {
	dir         string
	controllers []string
}

// layout is where the host mounts its cgroups.
type layout struct {
	mode    Mode
	v1      []hierarchy // v1 hierarchies with at least one controller, in mount order
	unified string      // mount point of the cgroup2 hierarchy, or ""
	named   []string    // mount points of v1 hierarchies without controllers (name=systemd)
	// mkdirAll creates a cgroup directory; nil means os.MkdirAll (the kernel fills it with control
	// files). Tests on a fake tree set it to create the control files as the kernel would.
	mkdirAll func(dir string) error
	// rmdir removes a cgroup directory; nil means rmdir(2), which the kernel allows on a cgroup
	// holding only control files.
	rmdir func(dir string) error
	// noCgroupKill makes Kill freeze and signal as on kernels before 5.14, which lack v2's
	// cgroup.kill (tests use it to cover that path).
	noCgroupKill bool
}

// Detect reports how this host mounts its cgroups, read from /proc/self/mountinfo.
func Detect() Mode {
	l, err := detect()
	if err != nil {
		return None
	}
	return l.mode
}

func detect() (layout, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return layout{}, fmt.Errorf("detect cgroups: %w", err)
	}
	defer f.Close()
	l, err := parseMountinfo(f)
	if err != nil {
		return layout{}, err
	}
	if l.mode == None {
		return l, fmt.Errorf("detect cgroups: no cgroup or cgroup2 file system is mounted (see /proc/self/mountinfo); mount one at /sys/fs/cgroup: %w", errdefs.ErrUnavailable)
	}
	return l, nil
}

// parseMountinfo reads the cgroup mounts of a mountinfo file (proc(5)). The first mount of each
// hierarchy wins; named v1 hierarchies without controllers (name=systemd) are kept apart.
func parseMountinfo(r io.Reader) (layout, error) {
	var l layout
	seen := map[string]bool{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+4 {
			continue
		}
		mountpoint := unescape(fields[4])
		fstype, superOpts := fields[sep+1], fields[sep+3]
		switch fstype {
		case "cgroup2":
			if l.unified == "" {
				l.unified = mountpoint
			}
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(superOpts, ",") {
				if knownV1[o] {
					ctrls = append(ctrls, o)
				}
			}
			key := strings.Join(ctrls, ",")
			if len(ctrls) == 0 {
				for _, o := range strings.Split(superOpts, ",") {
					if strings.HasPrefix(o, "name=") && !seen[o] {
						seen[o] = true
						l.named = append(l.named, mountpoint)
					}
				}
				continue
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			l.v1 = append(l.v1, hierarchy{dir: mountpoint, controllers: ctrls})
		}
	}
	if err := s.Err(); err != nil {
		return layout{}, fmt.Errorf("read mountinfo: %w", err)
	}
	switch {
	case len(l.v1) > 0 && l.unified != "":
		l.mode = Hybrid
	case len(l.v1) > 0:
		l.mode = V1
	case l.unified != "":
		l.mode = V2
	}
	return l, nil
}

// knownV1 lists the v1 controllers (the super options of a cgroup mount that name one).
var knownV1 = map[string]bool{
	"cpu": true, "cpuacct": true, "cpuset": true, "memory": true, "devices": true, "freezer": true,
	"blkio": true, "pids": true, "hugetlb": true, "net_cls": true, "net_prio": true,
	"perf_event": true, "rdma": true, "misc": true,
}

// unescape decodes the octal escapes (\040 for a space) of a mountinfo path.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
