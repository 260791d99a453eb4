package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/internal/errdefs"
)

// v2Files are the control files the kernel creates in a non-root v2 cgroup whose parent enabled
// cpu, cpuset, io, memory and pids.
var v2Files = []string{
	"cgroup.procs", "cgroup.controllers", "cgroup.subtree_control", "cgroup.kill", "cgroup.freeze",
	"cgroup.events", "memory.max", "memory.high", "memory.low", "memory.swap.max", "memory.current", "memory.events",
	"cpu.weight", "cpu.max", "cpu.max.burst", "cpuset.cpus", "cpuset.mems", "pids.max", "pids.current",
}

// fakeV2 lays out a temp dir like /sys/fs/cgroup on a pure v2 host and returns its layout.
func fakeV2(t *testing.T, swapAccounting bool) layout {
	t.Helper()
	root := t.TempDir()
	write := func(dir, name, v string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(root, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
	write(root, "cgroup.subtree_control", "")
	write(root, "cgroup.procs", "1\n")
	return layout{mode: V2, unified: root, mkdirAll: func(dir string) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, f := range v2Files {
			if f == "memory.swap.max" && !swapAccounting {
				continue
			}
			write(dir, f, "")
		}
		return nil
	}, rmdir: func(dir string) error {
		if _, err := os.Stat(dir); err != nil {
			return err
		}
		return os.RemoveAll(dir)
	}}
}

// tree renders every non-empty control file below root as path -> content.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if len(b) > 0 && filepath.Base(p) != "cgroup.controllers" {
			rel, _ := filepath.Rel(root, p)
			got[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func ptr[T any](v T) *T { return &v }

func TestV2Resources(t *testing.T) {
	const enabled = "+cpu +io +memory +pids"
	tests := []struct {
		name    string
		path    string
		swap    bool // host has swap accounting (memory.swap.max exists)
		res     *specs.LinuxResources
		want    map[string]string
		wantErr error
	}{
		{
			name: "no limits: controllers enabled down the path",
			path: "/ov/c1",
			want: map[string]string{"cgroup.procs": "1\n", "cgroup.subtree_control": enabled, "ov/cgroup.subtree_control": enabled},
		},
		{
			name: "memory, swap, cpus, shares, pids",
			path: "/ov/c2",
			swap: true,
			res: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20)), Reservation: ptr(int64(32 << 20)), Swap: ptr(int64(96 << 20))},
				CPU:    &specs.LinuxCPU{Shares: ptr(uint64(1024)), Quota: ptr(int64(150000)), Period: ptr(uint64(100000))},
				Pids:   &specs.LinuxPids{Limit: ptr(int64(20))},
			},
			want: map[string]string{
				"cgroup.procs": "1\n", "cgroup.subtree_control": enabled, "ov/cgroup.subtree_control": enabled,
				"ov/c2/memory.max": "67108864", "ov/c2/memory.low": "33554432", "ov/c2/memory.swap.max": "33554432",
				"ov/c2/cpu.weight": "39", "ov/c2/cpu.max": "150000 100000", "ov/c2/pids.max": "20",
			},
		},
		{
			name: "unlimited memory and pids, no swap accounting, cpuset enabled",
			path: "/c3",
			res: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: ptr(int64(-1)), Swap: ptr(int64(-1))},
				CPU:    &specs.LinuxCPU{Cpus: "0-1", Mems: "0", Quota: ptr(int64(-1))},
				Pids:   &specs.LinuxPids{Limit: ptr(int64(0))},
			},
			want: map[string]string{
				"cgroup.procs": "1\n", "cgroup.subtree_control": enabled + " +cpuset",
				"c3/memory.max": "max", "c3/cpu.max": "max 100000", "c3/cpuset.cpus": "0-1", "c3/cpuset.mems": "0", "c3/pids.max": "max",
			},
		},
		{
			name: "unified keys written as given",
			path: "/c4",
			res:  &specs.LinuxResources{Unified: map[string]string{"memory.high": "1000000", "pids.max": "7"}},
			want: map[string]string{
				"cgroup.procs": "1\n", "cgroup.subtree_control": enabled,
				"c4/memory.high": "1000000", "c4/pids.max": "7",
			},
		},
		{
			name:    "swap below memory is refused",
			path:    "/c5",
			swap:    true,
			res:     &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20)), Swap: ptr(int64(32 << 20))}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "unsupported block IO limit is refused, not dropped",
			path:    "/c6",
			res:     &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: ptr(uint16(10))}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "unified key with a slash is refused",
			path:    "/c7",
			res:     &specs.LinuxResources{Unified: map[string]string{"../memory.max": "1"}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{name: "empty path", path: "", wantErr: errdefs.ErrInvalidArgument},
		{name: "relative path", path: "ov/c8", wantErr: errdefs.ErrInvalidArgument},
		{name: "dot-dot path", path: "/ov/../../etc", wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := fakeV2(t, tt.swap)
			_, err := newWithLayout(l, Config{Path: tt.path, Resources: tt.res})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("New: err = %v, want %v", err, tt.wantErr)
				}
				leaf := filepath.Join(l.unified, strings.TrimPrefix(tt.path, "/"))
				if _, err := os.Stat(leaf); tt.path != "" && err == nil {
					t.Errorf("failed New left %s behind", leaf)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if d := cmp.Diff(tt.want, tree(t, l.unified)); d != "" {
				t.Errorf("control files (-want +got):\n%s", d)
			}
		})
	}
}

func TestV2AddLoadDelete(t *testing.T) {
	l := fakeV2(t, false)
	c, err := newWithLayout(l, Config{Path: "/ov/c1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Add(4242); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(l.unified, "ov/c1")
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs")); string(b) != "4242" {
		t.Errorf("cgroup.procs = %q, want 4242", b)
	}
	pids, err := c.Pids()
	if err != nil || len(pids) != 1 || pids[0] != 4242 {
		t.Errorf("Pids = %v, %v; want [4242]", pids, err)
	}
	if _, err := newWithLayout(l, Config{Path: "/ov/c1"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("New on a cgroup with processes: err = %v, want ErrAlreadyExists", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if oom, err := c.OOMKilled(); err != nil || !oom {
		t.Errorf("OOMKilled = %v, %v; want true", oom, err)
	}
	for name, v := range map[string]string{"memory.current": "1048576\n", "memory.max": "max\n", "pids.current": "3\n", "pids.max": "max\n", "cpu.stat": "usage_usec 2500\nuser_usec 2000\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, err := c.Stats()
	if want := (Stats{MemoryUsage: 1 << 20, PidsCurrent: 3, OOMKills: 1, CPUUsage: 2500000}); err != nil || st != want {
		t.Errorf("Stats = %+v, %v; want %+v", st, err, want)
	}
	if _, err := loadWithLayout(l, "/ov/c1"); err != nil {
		t.Errorf("Load existing: %v", err)
	}
	if _, err := loadWithLayout(l, "/ov/nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Load missing: err = %v, want ErrNotFound", err)
	}
}
