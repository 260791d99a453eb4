package cgroup

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
