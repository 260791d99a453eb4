package agent

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// applyProcOptions applies the process and security options of a create (api/create_proc.go) to the
// spec that runtime/spec made: --init, --device, --ulimit, --security-opt and --shm-size.
// (--group-add goes through spec.Options; --add-host through the hosts file.)
func applyProcOptions(s *specs.Spec, in specInput) error {
	c := in.Create
	if c.Init {
		if in.InitPath == "" {
			return fmt.Errorf("--init: this agent has no init (ovinit is not next to ovagent); install ovinit beside ovagent or set the agent's --init-path: %w", errdefs.ErrInvalidArgument)
		}
		s.Process.Args = append([]string{initMountPoint, "--"}, s.Process.Args...)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: initMountPoint, Type: "bind", Source: in.InitPath, Options: []string{"rbind", "rprivate", "ro"}})
	}
	for _, d := range c.Devices {
		if err := addDevice(s, d); err != nil {
			return err
		}
	}
	for _, u := range c.Ulimits {
		setRlimit(s, u)
	}
	if err := applySecurityOpts(s, c.SecurityOpt); err != nil {
		return err
	}
	if c.ShmSize > 0 {
		for i, m := range s.Mounts {
			if m.Destination == "/dev/shm" && m.Type == "tmpfs" {
				opts := slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return strings.HasPrefix(o, "size=") })
				s.Mounts[i].Options = append(opts, "size="+strconv.FormatInt(c.ShmSize, 10))
			}
		}
	}
	return nil
}

// addDevice makes the host's device node d.PathOnHost appear at d.PathInContainer and allows it in
// the device cgroup with d.CgroupPermissions, as Docker's --device.
func addDevice(s *specs.Spec, d api.DeviceMapping) error {
	var st unix.Stat_t
	if err := unix.Stat(d.PathOnHost, &st); err != nil {
		return fmt.Errorf("--device %s: %v; give a device node of this host: %w", d.PathOnHost, err, errdefs.ErrInvalidArgument)
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return fmt.Errorf("--device %s: not a character or block device; give a device node such as /dev/fuse: %w", d.PathOnHost, errdefs.ErrInvalidArgument)
	}
	major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: d.PathInContainer, Type: typ, Major: major, Minor: minor, FileMode: &mode, UID: &uid, GID: &gid})
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: d.CgroupPermissions})
	return nil
}

// setRlimit sets one --ulimit in process.rlimits, replacing the default of the same resource.
func setRlimit(s *specs.Spec, u api.Ulimit) {
	val := func(v int64) uint64 {
		if v < 0 {
			return unix.RLIM_INFINITY
		}
		return uint64(v)
	}
	r := specs.POSIXRlimit{Type: api.UlimitNames[u.Name], Soft: val(u.Soft), Hard: val(u.Hard)}
	if i := slices.IndexFunc(s.Process.Rlimits, func(o specs.POSIXRlimit) bool { return o.Type == r.Type }); i >= 0 {
		s.Process.Rlimits[i] = r
	} else {
		s.Process.Rlimits = append(s.Process.Rlimits, r)
	}
}

// applySecurityOpts applies --security-opt: no-new-privileges (on by default in ov: =false turns it
// off), seccomp=unconfined (no filter) and seccomp=PROFILE (Docker's JSON profile, sent by the client).
func applySecurityOpts(s *specs.Spec, opts []string) error {
	for _, o := range opts {
		key, val, err := api.ParseSecurityOpt(o)
		if err != nil {
			return err
		}
		switch {
		case key == api.SecurityOptNoNewPrivileges:
			s.Process.NoNewPrivileges = val == "true"
		case key == api.SecurityOptSeccomp && val == "unconfined":
			s.Linux.Seccomp = nil
		case key == api.SecurityOptSeccomp:
			prof, err := seccomp.LoadProfile(val, s)
			if err != nil {
				return fmt.Errorf("--security-opt seccomp: the profile is not a valid Docker seccomp profile: %v; fix it (see Docker's default profile for the format): %w", err, errdefs.ErrInvalidArgument)
			}
			s.Linux.Seccomp = prof
		}
	}
	return nil
}
