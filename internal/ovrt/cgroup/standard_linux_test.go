package cgroup

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/internal/testutil"
)

func TestDeviceRules(t *testing.T) {
	spec := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	render := func(rules []specs.LinuxDeviceCgroup) string {
		var s []string
		for _, r := range rules {
			verb := "deny"
			if r.Allow {
				verb = "allow"
			}
			s = append(s, verb+" "+deviceRule(r))
		}
		return strings.Join(s, ", ")
	}
	// runc 1.1.5: deny all, the spec's rules, then its AllowedDevices in order.
	want := "deny a *:* rwm, deny a *:* rwm, allow c *:* m, allow b *:* m, allow c 1:3 rwm, allow c 1:8 rwm, allow c 1:7 rwm, " +
		"allow c 5:0 rwm, allow c 1:5 rwm, allow c 1:9 rwm, allow c 136:* rwm, allow c 5:2 rwm, allow c 10:200 rwm"
	if got := render(DeviceRules(spec, nil)); got != want {
		t.Errorf("DeviceRules:\n got %s\nwant %s", got, want)
	}
	// A spec device at /dev/null takes the place of the standard one, and its rule.
	got := render(DeviceRules(nil, func(p string) bool { return p == "/dev/null" }))
	if strings.Contains(got, "1:3") || !strings.HasPrefix(got, "deny a *:* rwm, allow c *:* m") {
		t.Errorf("DeviceRules with /dev/null replaced: %s", got)
	}
}

// TestStandardDevicesInCgroup: with a spec that denies every device (as `runc spec` writes),
// DeviceRules still lets a process of the cgroup use the standard devices, on v1's devices
// controller and with the v2 eBPF filter, and nothing else.
func TestStandardDevicesInCgroup(t *testing.T) {
	l := hostLayout(t)
	layouts := map[string]layout{}
	if l.mode != V2 {
		layouts["v1"] = l
	}
	if l.unified != "" {
		layouts["v2"] = layout{mode: V2, unified: l.unified}
	}
	if len(layouts) == 0 {
		testutil.Skip(t, "host has neither a v1 devices hierarchy nor a cgroup2 mount")
	}
	for name, lay := range layouts {
		t.Run(name, func(t *testing.T) {
			c := realCgroup(t, lay, &specs.LinuxResources{Devices: DeviceRules([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, nil)})
			node := filepath.Join(t.TempDir(), "node")
			check := func(name, cmd string) string {
				return fmt.Sprintf("if (%s) >/dev/null 2>&1; then echo %s=ok; else echo %s=denied; fi; ", cmd, name, name)
			}
			cmd, out := startIn(t, c, check("write-null", "echo x >/dev/null")+
				check("read-zero", "head -c 1 /dev/zero")+
				check("write-full", "head -c 1 /dev/full")+
				check("read-urandom", "head -c 1 /dev/urandom")+
				check("mknod-mem", "mknod "+node+"1 c 1 1")+
				check("read-mem", "head -c 1 "+node+"1")+
				check("mknod-loop", "mknod "+node+"2 b 7 0")+
				check("read-loop", "head -c 1 "+node+"2"))
			_ = cmd.Wait()
			got := strings.Join(strings.Fields(out.String()), " ")
			want := "write-null=ok read-zero=ok write-full=ok read-urandom=ok mknod-mem=ok read-mem=denied mknod-loop=ok read-loop=denied"
			if got != want {
				t.Errorf("device access inside the cgroup:\n got %s\nwant %s", got, want)
			}
		})
	}
}
