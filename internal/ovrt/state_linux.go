package ovrt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/internal/atomicfile"
	"github.com/ovnet/ov/internal/errdefs"
)

// State is what State and List report: the OCI state (ociVersion, id, status, pid, bundle,
// annotations; the same JSON as runc's) plus ov's fields.
type State struct {
	specs.State
	// Rootfs is the absolute path of the container's root filesystem on the host.
	Rootfs string `json:"rootfs"`
	// Created is when Create finished.
	Created time.Time `json:"created"`
	// Owner is the owner of the container (always "" for a root runtime, like runc).
	Owner string `json:"owner"`
	// CgroupPath is the container's cgroup, below the root of every hierarchy.
	CgroupPath string `json:"cgroupPath"`
	// OOMKilled is true once the kernel's OOM killer killed a process of the container (its memory
	// limit was exceeded). It is also reported as the annotation AnnotationOOMKilled = "true".
	OOMKilled bool `json:"oomKilled,omitempty"`
}

// AnnotationOOMKilled is set to "true" in State.Annotations when a process of the container was
// killed by the OOM killer.
const AnnotationOOMKilled = "org.ovnet.ov.oom-killed"

// record is what state.json holds.
type record struct {
	ID         string      `json:"id"`
	Bundle     string      `json:"bundle"`
	Rootfs     string      `json:"rootfs"`
	Pid        int         `json:"pid"`
	StartTime  uint64      `json:"startTime"` // field 22 of /proc/<pid>/stat, against pid reuse
	Created    time.Time   `json:"created"`
	CgroupPath string      `json:"cgroupPath"`
	Spec       *specs.Spec `json:"spec"`
	NewNS      []string    `json:"newNamespaces"` // namespace types the container created
}

const (
	stateFile = "state.json"
	fifoFile  = "exec.fifo"
)

// writeRecord replaces dir/state.json atomically, without fsync: the state directory lives on tmpfs
// in production.
func writeRecord(dir string, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, stateFile), b, 0o600); err != nil {
		return fmt.Errorf("write state of %s: %w", r.ID, err)
	}
	return nil
}

func readRecord(dir, id string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("container %q does not exist: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("container %q: read state: %w", id, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("container %q: state file %s is corrupt (%v); delete the container with force", id, filepath.Join(dir, stateFile), err)
	}
	return &r, nil
}

// procStat returns the state letter and start time (clock ticks after boot) of pid, or ok=false
// when no such process exists.
func procStat(pid int) (state byte, start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, 0, false
	}
	f := strings.Fields(s[i+2:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64) // field 22
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], start, true
}

// alive reports whether pid is still the process that was started at start and has not exited
// (a zombie has exited).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, s, ok := procStat(pid)
	return ok && s == start && st != 'Z' && st != 'X'
}

func readSmall(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}
