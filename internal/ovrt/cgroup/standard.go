package cgroup

import specs "github.com/opencontainers/runtime-spec/specs-go"

// StandardDevice is a device every container may use whatever its spec's device rules say, as in
// runc 1.1's AllowedDevices. Path is the node the runtime creates for it in the container's /dev,
// "" for a rule without a node.
type StandardDevice struct {
	Path string
	Rule specs.LinuxDeviceCgroup
}

func charRule(major, minor int64, access string) specs.LinuxDeviceCgroup {
	r := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Access: access}
	if major >= 0 {
		r.Major = &major
	}
	if minor >= 0 {
		r.Minor = &minor
	}
	return r
}

// StandardDevices returns runc 1.1's AllowedDevices, in its order: mknod of any character or block
// device (opening one still needs a rule), /dev/null, random, full, tty, zero, urandom, the
// container's ptys (/dev/pts/*, 136:*, which also covers /dev/console: a runtime makes it a bind
// mount of a pty), /dev/ptmx (5:2) and /dev/net/tun (10:200).
func StandardDevices() []StandardDevice {
	block := specs.LinuxDeviceCgroup{Allow: true, Type: "b", Access: "m"}
	return []StandardDevice{
		{Rule: charRule(-1, -1, "m")},
		{Rule: block},
		{Path: "/dev/null", Rule: charRule(1, 3, "rwm")},
		{Path: "/dev/random", Rule: charRule(1, 8, "rwm")},
		{Path: "/dev/full", Rule: charRule(1, 7, "rwm")},
		{Path: "/dev/tty", Rule: charRule(5, 0, "rwm")},
		{Path: "/dev/zero", Rule: charRule(1, 5, "rwm")},
		{Path: "/dev/urandom", Rule: charRule(1, 9, "rwm")},
		{Rule: charRule(136, -1, "rwm")},
		{Rule: charRule(5, 2, "rwm")},
		{Rule: charRule(10, 200, "rwm")},
	}
}

// DeviceRules returns the device rules of a container's cgroup as runc 1.1 computes them from its
// spec: everything denied, then the spec's linux.resources.devices in order, then the standard
// devices' rules. The last rule that matches an access decides, so the standard devices stay
// allowed whatever the spec says; a standard device whose path the spec's linux.devices takes
// over (replaced returns true) keeps no rule, as in runc.
func DeviceRules(spec []specs.LinuxDeviceCgroup, replaced func(path string) bool) []specs.LinuxDeviceCgroup {
	rules := append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, spec...)
	for _, d := range StandardDevices() {
		if d.Path != "" && replaced != nil && replaced(d.Path) {
			continue
		}
		rules = append(rules, d.Rule)
	}
	return rules
}
