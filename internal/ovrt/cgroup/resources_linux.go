package cgroup

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/internal/errdefs"
)

// checkResources refuses limits ov cannot apply on this host, so that no limit is silently dropped.
func checkResources(l layout, r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	var unsupported []string
	if r.BlockIO != nil {
		unsupported = append(unsupported, "blockIO")
	}
	if len(r.HugepageLimits) > 0 {
		unsupported = append(unsupported, "hugepageLimits")
	}
	if r.Network != nil {
		unsupported = append(unsupported, "network")
	}
	if len(r.Rdma) > 0 {
		unsupported = append(unsupported, "rdma")
	}
	if len(r.Unified) > 0 && l.mode != V2 {
		unsupported = append(unsupported, "unified (needs a cgroup v2 host, this one is "+l.mode.String()+")")
	}
	if len(unsupported) > 0 {
		return fmt.Errorf("resources %s are not supported by ov; remove them from linux.resources: %w", strings.Join(unsupported, ", "), errdefs.ErrInvalidArgument)
	}
	for k := range r.Unified {
		if k == "" || strings.ContainsAny(k, "/") || strings.HasPrefix(k, "cgroup.") {
			return fmt.Errorf("resources: unified key %q is not a controller file name: %w", k, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// Update applies r to the cgroup (nil changes nothing). Limits r leaves unset are not changed.
func (c *Cgroup) Update(r *specs.LinuxResources) error {
	if err := checkResources(c.layout, r); err != nil {
		return c.wrap("update", err)
	}
	if r == nil {
		return nil
	}
	return c.apply(r, false)
}

// apply writes r; creating says the cgroup was just made (v2 device rules can be set only then).
func (c *Cgroup) apply(r *specs.LinuxResources, creating bool) error {
	if r == nil {
		return nil
	}
	var err error
	if c.layout.mode == V2 {
		err = c.applyV2(r, creating)
	} else {
		err = c.applyV1(r)
	}
	return c.wrap("set resources", err)
}

// file is one control file write.
type file struct{ name, value string }

// writeAll writes files in order into dir; a controller the host lacks (dir == "") is an error
// naming it.
func writeAll(dir, controller string, files []file) error {
	if len(files) == 0 {
		return nil
	}
	if dir == "" {
		return fmt.Errorf("the %s controller is not mounted on this host; remove the %s limits or mount it: %w", controller, controller, errdefs.ErrUnavailable)
	}
	for _, f := range files {
		if err := writeFile(dir, f.name, f.value); err != nil {
			return err
		}
	}
	return nil
}

func i64(v int64) string  { return strconv.FormatInt(v, 10) }
func u64(v uint64) string { return strconv.FormatUint(v, 10) }

func (c *Cgroup) applyV1(r *specs.LinuxResources) error {
	if m := r.Memory; m != nil {
		if err := c.memoryV1(m); err != nil {
			return err
		}
	}
	if cpu := r.CPU; cpu != nil {
		var fs []file
		if cpu.Shares != nil {
			fs = append(fs, file{"cpu.shares", u64(*cpu.Shares)})
		}
		if cpu.Period != nil {
			fs = append(fs, file{"cpu.cfs_period_us", u64(*cpu.Period)})
		}
		if cpu.Quota != nil {
			fs = append(fs, file{"cpu.cfs_quota_us", i64(*cpu.Quota)})
		}
		if cpu.Burst != nil {
			fs = append(fs, file{"cpu.cfs_burst_us", u64(*cpu.Burst)})
		}
		if cpu.RealtimePeriod != nil {
			fs = append(fs, file{"cpu.rt_period_us", u64(*cpu.RealtimePeriod)})
		}
		if cpu.RealtimeRuntime != nil {
			fs = append(fs, file{"cpu.rt_runtime_us", i64(*cpu.RealtimeRuntime)})
		}
		if cpu.Idle != nil {
			fs = append(fs, file{"cpu.idle", i64(*cpu.Idle)})
		}
		if err := writeAll(c.dir("cpu"), "cpu", fs); err != nil {
			return err
		}
		if err := writeAll(c.dir("cpuset"), "cpuset", cpusetFiles(cpu)); err != nil {
			return err
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		if err := writeAll(c.dir("pids"), "pids", []file{{"pids.max", pidsMax(*p.Limit)}}); err != nil {
			return err
		}
	}
	if len(r.Devices) > 0 {
		var fs []file
		for _, d := range r.Devices {
			name := "devices.deny"
			if d.Allow {
				name = "devices.allow"
			}
			fs = append(fs, file{name, deviceRule(d)})
		}
		if err := writeAll(c.dir("devices"), "devices", fs); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cgroup) memoryV1(m *specs.LinuxMemory) error {
	dir := c.dir("memory")
	var limits []file
	if m.Limit != nil {
		limits = append(limits, file{"memory.limit_in_bytes", i64(*m.Limit)})
	}
	if m.Swap != nil && dir != "" && exists(dir, "memory.memsw.limit_in_bytes") {
		// memory+swap must stay >= memory at every step: when the write order breaks that, the
		// kernel says EINVAL and the other order works.
		limits = append(limits, file{"memory.memsw.limit_in_bytes", i64(*m.Swap)})
	}
	if err := writeAll(dir, "memory", limits); err != nil {
		sort.SliceStable(limits, func(i, j int) bool { return limits[i].name > limits[j].name })
		if err2 := writeAll(dir, "memory", limits); err2 != nil {
			return err
		}
	}
	var fs []file
	if m.Reservation != nil {
		fs = append(fs, file{"memory.soft_limit_in_bytes", i64(*m.Reservation)})
	}
	if m.Swappiness != nil {
		fs = append(fs, file{"memory.swappiness", u64(*m.Swappiness)})
	}
	if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
		fs = append(fs, file{"memory.oom_control", "1"})
	}
	return writeAll(dir, "memory", fs)
}

func cpusetFiles(cpu *specs.LinuxCPU) []file {
	var fs []file
	if cpu.Cpus != "" {
		fs = append(fs, file{"cpuset.cpus", cpu.Cpus})
	}
	if cpu.Mems != "" {
		fs = append(fs, file{"cpuset.mems", cpu.Mems})
	}
	return fs
}

func pidsMax(limit int64) string {
	if limit <= 0 {
		return "max"
	}
	return i64(limit)
}

// deviceRule renders a device cgroup rule as v1's devices.allow/deny take it: "c 1:3 rwm".
func deviceRule(d specs.LinuxDeviceCgroup) string {
	typ, major, minor, access := d.Type, "*", "*", d.Access
	if typ == "" {
		typ = "a"
	}
	if d.Major != nil && *d.Major >= 0 {
		major = i64(*d.Major)
	}
	if d.Minor != nil && *d.Minor >= 0 {
		minor = i64(*d.Minor)
	}
	if access == "" {
		access = "rwm"
	}
	return fmt.Sprintf("%s %s:%s %s", typ, major, minor, access)
}

// v2Controllers are enabled for every container when the host offers them (for limits and for
// Stats); cpuset only when the spec pins cpus or mems.
var v2Controllers = []string{"cpu", "io", "memory", "pids"}

// createV2 creates the cgroup and enables its controllers in cgroup.subtree_control of every
// ancestor, from the root down.
func (c *Cgroup) createV2(r *specs.LinuxResources) error {
	root := c.layout.unified
	want := append([]string(nil), v2Controllers...)
	if r != nil && r.CPU != nil && (r.CPU.Cpus != "" || r.CPU.Mems != "") {
		want = append(want, "cpuset")
	}
	avail, err := readFile(root, "cgroup.controllers")
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, ct := range strings.Fields(avail) {
		have[ct] = true
	}
	var enable []string
	for _, ct := range want {
		if have[ct] {
			enable = append(enable, "+"+ct)
		}
	}
	dir := root
	for _, e := range strings.Split(strings.Trim(c.path, "/"), "/") {
		if len(enable) > 0 {
			if err := writeFile(dir, "cgroup.subtree_control", strings.Join(enable, " ")); err != nil {
				return fmt.Errorf("enable controllers (a cgroup with processes cannot delegate them): %w", err)
			}
		}
		dir = filepath.Join(dir, e)
		if err := c.mkdir(dir); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cgroup) applyV2(r *specs.LinuxResources, creating bool) error {
	dir := c.unifiedDir()
	var fs []file
	need := func(ct string) error {
		if !exists(dir, ct+".max") && !exists(dir, ct+".weight") && !exists(dir, ct+".cpus") {
			return fmt.Errorf("the %s controller is not enabled for %s (see cgroup.controllers of the root): %w", ct, dir, errdefs.ErrUnavailable)
		}
		return nil
	}
	if m := r.Memory; m != nil {
		if err := need("memory"); err != nil {
			return err
		}
		if m.Reservation != nil {
			fs = append(fs, file{"memory.low", i64(*m.Reservation)})
		}
		if m.Limit != nil {
			fs = append(fs, file{"memory.max", maxV2(*m.Limit)})
		}
		// The OCI swap figure is memory+swap (v1's meaning); v2 limits swap alone. Hosts without
		// swap accounting have no memory.swap.max: the swap limit is then moot, as Docker says.
		if m.Swap != nil && exists(dir, "memory.swap.max") {
			swap := *m.Swap
			if swap > 0 && m.Limit != nil && *m.Limit > 0 {
				if swap < *m.Limit {
					return fmt.Errorf("memory+swap limit %d is below the memory limit %d: %w", swap, *m.Limit, errdefs.ErrInvalidArgument)
				}
				swap -= *m.Limit
			}
			fs = append(fs, file{"memory.swap.max", maxV2(swap)})
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			return fmt.Errorf("disableOOMKiller is not available on cgroup v2: %w", errdefs.ErrInvalidArgument)
		}
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Shares != nil || cpu.Quota != nil || cpu.Period != nil {
			if err := need("cpu"); err != nil {
				return err
			}
		}
		if cpu.Shares != nil && *cpu.Shares > 0 {
			fs = append(fs, file{"cpu.weight", u64(sharesToWeight(*cpu.Shares))})
		}
		if cpu.Quota != nil || cpu.Period != nil {
			quota, period := "max", uint64(100000)
			if cpu.Quota != nil && *cpu.Quota > 0 {
				quota = i64(*cpu.Quota)
			}
			if cpu.Period != nil && *cpu.Period > 0 {
				period = *cpu.Period
			}
			fs = append(fs, file{"cpu.max", quota + " " + u64(period)})
		}
		if cpu.Burst != nil {
			fs = append(fs, file{"cpu.max.burst", u64(*cpu.Burst)})
		}
		if cpu.Idle != nil {
			fs = append(fs, file{"cpu.idle", i64(*cpu.Idle)})
		}
		fs = append(fs, cpusetFiles(cpu)...)
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		if err := need("pids"); err != nil {
			return err
		}
		fs = append(fs, file{"pids.max", pidsMax(*p.Limit)})
	}
	keys := make([]string, 0, len(r.Unified))
	for k := range r.Unified {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fs = append(fs, file{k, r.Unified[k]})
	}
	if err := writeAll(dir, "unified", fs); err != nil {
		return err
	}
	if len(r.Devices) > 0 {
		if !creating {
			return fmt.Errorf("%w: create a new container to change them: %w", errDevicesFixed, errdefs.ErrInvalidArgument)
		}
		return attachDevices(dir, r.Devices)
	}
	return nil
}

func maxV2(v int64) string {
	if v < 0 {
		return "max"
	}
	return i64(v)
}

// sharesToWeight converts v1 cpu.shares (2..262144, default 1024) to v2 cpu.weight (1..10000,
// default 100) as runc and the kernel documentation do.
func sharesToWeight(shares uint64) uint64 {
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}
