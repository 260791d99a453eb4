package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
)

// Config says which cgroup to create and what to limit.
type Config struct {
	// Path is the cgroup's absolute path below the root of every hierarchy: the OCI spec's
	// linux.cgroupsPath, e.g. "/ov/<container id>". Required.
	Path string
	// Resources are the limits to apply (the OCI spec's linux.resources); nil applies none.
	Resources *specs.LinuxResources
}

// Cgroup is one container's cgroup, present in every hierarchy of the host.
type Cgroup struct {
	path   string
	layout layout
}

// Stats is a cheap snapshot of a cgroup's usage. A figure the host cannot report is 0.
type Stats struct {
	MemoryUsage uint64 // bytes charged now (memory.usage_in_bytes / memory.current)
	MemoryLimit uint64 // bytes; 0 means no limit
	PidsCurrent uint64 // tasks now in the cgroup (pids.current)
	PidsLimit   uint64 // 0 means no limit
	OOMKills    uint64 // processes the kernel's OOM killer killed in this cgroup
	CPUUsage    uint64 // CPU time consumed, in nanoseconds (cpuacct.usage / cpu.stat usage_usec)
}

// New creates the cgroup cfg.Path in every hierarchy of the host (or adopts it if it exists and is
// empty) and applies cfg.Resources. On error the cgroup is removed again (a shared parent such as
// /ov stays).
func New(cfg Config) (*Cgroup, error) {
	l, err := detect()
	if err != nil {
		return nil, err
	}
	return newWithLayout(l, cfg)
}

// Load returns the existing cgroup at path (as given to New), or errdefs.ErrNotFound.
func Load(p string) (*Cgroup, error) {
	l, err := detect()
	if err != nil {
		return nil, err
	}
	return loadWithLayout(l, p)
}

func cleanPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("cgroup: empty path: set linux.cgroupsPath (e.g. /ov/<id>): %w", errdefs.ErrInvalidArgument)
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("cgroup path %q: must be absolute (e.g. /ov/<id>): %w", p, errdefs.ErrInvalidArgument)
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return "", fmt.Errorf("cgroup path %q: must not contain \"..\": %w", p, errdefs.ErrInvalidArgument)
		}
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("cgroup path %q: is the root cgroup; name a cgroup below it (e.g. /ov/<id>): %w", p, errdefs.ErrInvalidArgument)
	}
	return c, nil
}

func loadWithLayout(l layout, p string) (*Cgroup, error) {
	cp, err := cleanPath(p)
	if err != nil {
		return nil, err
	}
	c := &Cgroup{path: cp, layout: l}
	for _, d := range c.dirs() {
		if _, err := os.Stat(d); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("cgroup %s: does not exist in any hierarchy: %w", cp, errdefs.ErrNotFound)
}

func newWithLayout(l layout, cfg Config) (*Cgroup, error) {
	cp, err := cleanPath(cfg.Path)
	if err != nil {
		return nil, err
	}
	if err := checkResources(l, cfg.Resources); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", cp, err)
	}
	c := &Cgroup{path: cp, layout: l}
	if pids, err := c.Pids(); err == nil && len(pids) > 0 {
		return nil, fmt.Errorf("cgroup %s: exists and holds processes %v; another container uses it: %w", cp, pids, errdefs.ErrAlreadyExists)
	}
	if err := c.create(cfg.Resources); err != nil {
		_ = c.remove()
		return nil, fmt.Errorf("cgroup %s: create: %w", cp, err)
	}
	if err := c.apply(cfg.Resources, true); err != nil {
		_ = c.remove()
		return nil, err
	}
	return c, nil
}

// Path returns the cgroup's path as given to New.
func (c *Cgroup) Path() string { return c.path }

// Mode returns the host's cgroup mode this cgroup lives in.
func (c *Cgroup) Mode() Mode { return c.layout.mode }

// dir returns the cgroup's directory in the v1 hierarchy holding controller, or "".
func (c *Cgroup) dir(controller string) string {
	for _, h := range c.layout.v1 {
		for _, ct := range h.controllers {
			if ct == controller {
				return filepath.Join(h.dir, c.path)
			}
		}
	}
	return ""
}

// unifiedDir returns the cgroup's directory in the cgroup2 hierarchy, or "".
func (c *Cgroup) unifiedDir() string {
	if c.layout.unified == "" {
		return ""
	}
	return filepath.Join(c.layout.unified, c.path)
}

// dirs lists the cgroup's directories in every hierarchy.
func (c *Cgroup) dirs() []string {
	var ds []string
	if c.layout.mode != V2 {
		for _, h := range c.layout.v1 {
			ds = append(ds, filepath.Join(h.dir, c.path))
		}
	}
	if u := c.unifiedDir(); u != "" {
		ds = append(ds, u)
	}
	if c.layout.mode != V2 {
		for _, n := range c.layout.named {
			ds = append(ds, filepath.Join(n, c.path))
		}
	}
	return ds
}

// trackingDirs are the cgroup's directories in hierarchies without controllers that a v1 or
// hybrid host uses to track processes: the cgroup2 mount and named hierarchies (name=systemd).
// Membership there is best effort; it moves the container out of the cgroup of whoever started
// it (systemd stops every process of a service's cgroup), and keeps cgroup namespaces consistent.
func (c *Cgroup) trackingDirs() []string {
	if c.layout.mode == V2 {
		return nil
	}
	var ds []string
	if u := c.unifiedDir(); u != "" {
		ds = append(ds, u)
	}
	for _, n := range c.layout.named {
		ds = append(ds, filepath.Join(n, c.path))
	}
	return ds
}

// procsDir is the directory whose cgroup.procs lists the cgroup's processes.
func (c *Cgroup) procsDir() string {
	if c.layout.mode == V2 {
		return c.unifiedDir()
	}
	for _, ct := range []string{"pids", "freezer", "memory", "cpu"} {
		if d := c.dir(ct); d != "" {
			return d
		}
	}
	return filepath.Join(c.layout.v1[0].dir, c.path)
}

func (c *Cgroup) create(r *specs.LinuxResources) error {
	if c.layout.mode == V2 {
		return c.createV2(r)
	}
	for _, h := range c.layout.v1 {
		if err := c.mkdir(filepath.Join(h.dir, c.path)); err != nil {
			return err
		}
	}
	if d := c.dir("cpuset"); d != "" {
		if err := initCpuset(c.layout, d); err != nil {
			return err
		}
	}
	for _, d := range c.trackingDirs() {
		_ = c.mkdir(d)
	}
	return nil
}

// initCpuset gives every cpuset cgroup from the hierarchy's root down to dir the cpus and mems of
// its parent when they are empty: a v1 cpuset cgroup with no cpus accepts no task.
func initCpuset(l layout, dir string) error {
	var root string
	for _, h := range l.v1 {
		if strings.HasPrefix(dir, h.dir+"/") {
			root = h.dir
		}
	}
	rel := strings.TrimPrefix(dir, root)
	cur := root
	for _, e := range strings.Split(strings.Trim(rel, "/"), "/") {
		parent := cur
		cur = filepath.Join(cur, e)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := readFile(cur, f)
			if err != nil {
				return err
			}
			if v != "" {
				continue
			}
			pv, err := readFile(parent, f)
			if err != nil {
				return err
			}
			if err := writeFile(cur, f, pv); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Cgroup) mkdir(dir string) error {
	if c.layout.mkdirAll != nil {
		return c.layout.mkdirAll(dir)
	}
	return os.MkdirAll(dir, 0o755)
}

func (c *Cgroup) rmdir(dir string) error {
	if c.layout.rmdir != nil {
		return c.layout.rmdir(dir)
	}
	return unix.Rmdir(dir)
}

// Add moves the process pid (with all its threads) into the cgroup in every hierarchy.
func (c *Cgroup) Add(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("cgroup %s: add pid %d: not a process id: %w", c.path, pid, errdefs.ErrInvalidArgument)
	}
	s := strconv.Itoa(pid)
	if c.layout.mode == V2 {
		return c.wrap("add pid "+s, writeFile(c.unifiedDir(), "cgroup.procs", s))
	}
	for _, h := range c.layout.v1 {
		if err := writeFile(filepath.Join(h.dir, c.path), "cgroup.procs", s); err != nil {
			return c.wrap("add pid "+s, err)
		}
	}
	for _, d := range c.trackingDirs() {
		_ = writeFile(d, "cgroup.procs", s) // best effort, see trackingDirs
	}
	return nil
}

// Pids lists the processes in the cgroup and in the cgroups nested below it (a privileged
// container may make its own), not their threads, sorted.
func (c *Cgroup) Pids() ([]int, error) {
	root := c.procsDir()
	if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cgroup %s: list processes: %w", c.path, errdefs.ErrNotFound)
	}
	var pids []int
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil // a nested cgroup removed while walking
		}
		if err != nil || !d.IsDir() {
			return err
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			pids = append(pids, n)
		}
		return nil
	})
	if err != nil {
		return nil, c.wrap("list processes", err)
	}
	sort.Ints(pids)
	return slices.Compact(pids), nil
}

// OOMKilled reports whether the kernel's OOM killer has killed a process of the cgroup.
func (c *Cgroup) OOMKilled() (bool, error) {
	n, err := c.oomKills()
	return n > 0, err
}

func (c *Cgroup) oomKills() (uint64, error) {
	var dir, file string
	if c.layout.mode == V2 {
		dir, file = c.unifiedDir(), "memory.events"
	} else {
		dir, file = c.dir("memory"), "memory.oom_control"
	}
	if dir == "" {
		return 0, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // no memory controller here: nothing was OOM killed by a limit of ours
	}
	if err != nil {
		return 0, c.wrap("read OOM events", err)
	}
	return keyedValue(string(b), "oom_kill"), nil
}

// keyedValue returns the value of key in a "key value" per line file, or 0.
func keyedValue(text, key string) uint64 {
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// Stats returns the cgroup's memory and pids usage.
func (c *Cgroup) Stats() (Stats, error) {
	var s Stats
	var err error
	if s.OOMKills, err = c.oomKills(); err != nil {
		return s, err
	}
	memDir, pidsDir := c.dir("memory"), c.dir("pids")
	usage, limit := "memory.usage_in_bytes", "memory.limit_in_bytes"
	if c.layout.mode == V2 {
		memDir, pidsDir = c.unifiedDir(), c.unifiedDir()
		usage, limit = "memory.current", "memory.max"
	}
	s.MemoryUsage = readUint(memDir, usage)
	if l := readUint(memDir, limit); l < 1<<62 {
		s.MemoryLimit = l
	}
	if c.layout.mode == V2 {
		b, _ := os.ReadFile(filepath.Join(c.unifiedDir(), "cpu.stat"))
		s.CPUUsage = keyedValue(string(b), "usage_usec") * 1000
	} else {
		s.CPUUsage = readUint(c.dir("cpuacct"), "cpuacct.usage")
	}
	s.PidsCurrent = readUint(pidsDir, "pids.current")
	s.PidsLimit = readUint(pidsDir, "pids.max")
	return s, nil
}

// readUint reads a number file; "max", a missing file or garbage read as 0.
func readUint(dir, name string) uint64 {
	if dir == "" {
		return 0
	}
	v, err := readFile(dir, name)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(v, 10, 64)
	return n
}

// Kill sends SIGKILL to every process in the cgroup, including those forked while it runs: it
// freezes the cgroup first (v1 freezer, v2 cgroup.freeze) or uses v2's cgroup.kill. It does not
// wait for the processes to be reaped; Delete does that.
func (c *Cgroup) Kill() error {
	if u := c.unifiedDir(); c.layout.mode == V2 && u != "" && !c.layout.noCgroupKill {
		if _, err := os.Stat(filepath.Join(u, "cgroup.kill")); err == nil {
			return c.wrap("kill", writeFile(u, "cgroup.kill", "1"))
		}
	}
	thaw := c.freeze()
	err := c.signalAll()
	if thaw != nil {
		if terr := thaw(); err == nil {
			err = terr
		}
	}
	if err != nil {
		return c.wrap("kill", err)
	}
	// Without a freezer, processes may fork between listing and signalling: repeat until a
	// listing shows nothing new (a killed process may stay listed until it is reaped).
	return c.wrap("kill", c.signalAll())
}

// signalAll SIGKILLs every listed process, repeating while new ones appear.
func (c *Cgroup) signalAll() error {
	killed := map[int]bool{}
	for round := 0; round < 100; round++ {
		pids, err := c.Pids()
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		fresh := 0
		for _, p := range pids {
			if killed[p] {
				continue
			}
			fresh++
			killed[p] = true
			if err := unix.Kill(p, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("kill pid %d: %w", p, err)
			}
		}
		if fresh == 0 {
			return nil
		}
	}
	return fmt.Errorf("processes keep appearing after 100 rounds of SIGKILL: %w", errdefs.ErrConflict)
}

// freeze freezes the cgroup if the host can, and returns the function that thaws it (nil if the
// cgroup could not be frozen).
func (c *Cgroup) freeze() func() error {
	var dir, file, frozen, thawed string
	if c.layout.mode == V2 {
		dir, file, frozen, thawed = c.unifiedDir(), "cgroup.freeze", "1", "0"
	} else {
		dir, file, frozen, thawed = c.dir("freezer"), "freezer.state", "FROZEN", "THAWED"
	}
	if dir == "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
		return nil
	}
	thaw := func() error { return writeFile(dir, file, thawed) }
	if err := writeFile(dir, file, frozen); err != nil {
		_ = thaw()
		return nil
	}
	for i := 0; i < 200; i++ {
		if c.frozen(dir) {
			return thaw
		}
		time.Sleep(time.Millisecond)
	}
	// A task stuck in an uninterruptible sleep can keep the cgroup FREEZING; kill without the
	// guarantee rather than hang.
	_ = thaw()
	return nil
}

func (c *Cgroup) frozen(dir string) bool {
	if c.layout.mode == V2 {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		return keyedValue(string(b), "frozen") == 1
	}
	v, _ := readFile(dir, "freezer.state")
	return v == "FROZEN"
}

// Delete removes the cgroup from every hierarchy. It fails with errdefs.ErrConflict while processes
// remain (call Kill and reap them first). Deleting a cgroup that does not exist succeeds.
func (c *Cgroup) Delete() error {
	var pids []int
	var err error
	// Killed processes leave the cgroup once they are reaped: give that a moment.
	for i := 0; i < 50; i++ {
		pids, err = c.Pids()
		if errors.Is(err, errdefs.ErrNotFound) {
			pids, err = nil, nil
		}
		if err != nil || len(pids) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if len(pids) > 0 {
		return fmt.Errorf("cgroup %s: delete: processes %v are still inside; kill them first: %w", c.path, pids, errdefs.ErrConflict)
	}
	return c.wrap("delete", c.remove())
}

// remove removes the cgroup's directory from every hierarchy, retrying while the kernel still
// reports it busy (a process that just exited).
func (c *Cgroup) remove() error {
	var errs []error
	var dirs []string
	for _, top := range c.dirs() {
		// Nested cgroups first, deepest first: rmdir of a cgroup with children fails.
		var nested []string
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != top {
				nested = append(nested, p)
			}
			return nil
		})
		slices.Reverse(nested)
		dirs = append(append(dirs, nested...), top)
	}
	for _, d := range dirs {
		var err error
		for i := 0; i < 50; i++ {
			err = c.rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				err = nil
				break
			}
			if !errors.Is(err, unix.EBUSY) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if errors.Is(err, unix.EBUSY) {
			err = fmt.Errorf("%w", errdefs.ErrConflict)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Cgroup) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("cgroup %s: %s: %w", c.path, what, err)
}

// writeFile writes value to the control file dir/name. It does not create the file: control
// files exist once the kernel made the directory (test trees create them first).
func writeFile(dir, name, value string) error {
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, err)
	}
	return nil
}

func readFile(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}
