package ovrt

import (
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/ovrt/cgroup"
	"github.com/ovnet/ov/internal/ovrt/rootdir"
)

// Devices as runc 1.1 makes them (see docs/runtime.md, "runc compatibility"): the standard devices
// are always created and always allowed by the device cgroup, whatever linux.resources.devices
// says; linux.devices are created with mknod, bind-mounted from the host only where mknod is not
// allowed.

// specHasDevice tells whether the spec's linux.devices puts a node at path.
func specHasDevice(s *specs.Spec, path string) bool {
	if s.Linux == nil {
		return false
	}
	for _, d := range s.Linux.Devices {
		if d.Path == path {
			return true
		}
	}
	return false
}

// cgroupResources returns the resources to give the container's cgroup: the spec's, with the
// device rules runc applies (cgroup.DeviceRules). The spec itself is not changed.
func cgroupResources(s *specs.Spec) *specs.LinuxResources {
	var r specs.LinuxResources
	if s.Linux.Resources != nil {
		r = *s.Linux.Resources
	}
	r.Devices = cgroup.DeviceRules(r.Devices, func(p string) bool { return specHasDevice(s, p) })
	return &r
}

// standardNodes returns the device nodes of the standard devices, but those at a path that extra
// (the spec's linux.devices) takes over.
func standardNodes(extra []specs.LinuxDevice) []specs.LinuxDevice {
	var out []specs.LinuxDevice
	mode := os.FileMode(0o666)
next:
	for _, d := range cgroup.StandardDevices() {
		if d.Path == "" {
			continue
		}
		for _, e := range extra {
			if e.Path == d.Path {
				continue next
			}
		}
		out = append(out, specs.LinuxDevice{Path: d.Path, Type: d.Rule.Type, Major: *d.Rule.Major, Minor: *d.Rule.Minor, FileMode: &mode})
	}
	return out
}

// deviceMode returns the mode argument of mknod for d: its type and permission bits (0666 when
// the spec gives none).
func deviceMode(d specs.LinuxDevice) (uint32, error) {
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(*d.FileMode) & 0o7777
	}
	switch d.Type {
	case "c", "u":
		return mode | unix.S_IFCHR, nil
	case "b":
		return mode | unix.S_IFBLK, nil
	case "p":
		return mode | unix.S_IFIFO, nil
	}
	return 0, invalid("linux.devices %s: unknown type %q (want c, u, b or p)", d.Path, d.Type)
}

// bindDevice bind-mounts the host's node at d.Path onto the container's; mknodErr is why mknod was
// not used (nil inside a user namespace).
func bindDevice(root *rootdir.Dir, d specs.LinuxDevice, mknodErr error) error {
	err := bindMount(root, d.Path, d.Path, mountOptions{flags: unix.MS_BIND})
	if err == nil {
		return nil
	}
	if mknodErr != nil {
		return fmt.Errorf("create device %s: mknod %s %d:%d: %v (allow it in linux.resources.devices, or give the runtime CAP_MKNOD); no host node to bind-mount instead: %w",
			d.Path, d.Type, d.Major, d.Minor, mknodErr, err)
	}
	return fmt.Errorf("create device %s: inside a user namespace devices are bind-mounted from the host, and that failed (create %s on the host): %w", d.Path, d.Path, err)
}

// runningInUserNS tells whether the calling process is in a user namespace other than the
// initial one (whose uid map is the whole identity range), as runc's userns.RunningInUserNS.
func runningInUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}
