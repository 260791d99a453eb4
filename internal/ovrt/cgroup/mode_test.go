package cgroup

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMountinfo(t *testing.T) {
	const hybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	const v1 = `25 21 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
26 21 0:23 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory
27 21 0:23 / /mnt/memory\040copy rw,nosuid shared:10 - cgroup cgroup rw,memory
`
	const v2 = `22 1 0:5 / /proc rw - proc proc rw
29 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	tests := []struct {
		name string
		in   string
		want layout
	}{
		{"hybrid", hybrid, layout{mode: Hybrid, unified: "/sys/fs/cgroup/unified", named: []string{"/sys/fs/cgroup/systemd"}, v1: []hierarchy{
			{"/sys/fs/cgroup/cpu", []string{"cpu"}},
			{"/sys/fs/cgroup/cpuacct", []string{"cpuacct"}},
			{"/sys/fs/cgroup/memory", []string{"memory"}},
			{"/sys/fs/cgroup/pids", []string{"pids"}},
		}}},
		{"v1 comounted, second mount ignored", v1, layout{mode: V1, v1: []hierarchy{
			{"/sys/fs/cgroup/cpu,cpuacct", []string{"cpu", "cpuacct"}},
			{"/sys/fs/cgroup/memory", []string{"memory"}},
		}}},
		{"v2", v2, layout{mode: V2, unified: "/sys/fs/cgroup"}},
		{"none", "22 1 0:5 / /proc rw - proc proc rw\n", layout{mode: None}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(layout{}, hierarchy{})); d != "" {
				t.Errorf("layout (-want +got):\n%s", d)
			}
		})
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/mnt/a\040b\\x`); got != `/mnt/a b\\x` {
		t.Errorf("unescape = %q", got)
	}
}
