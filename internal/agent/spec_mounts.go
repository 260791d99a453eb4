package agent

import (
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/api"
)

// specMounts are the OCI mounts of a create's binds, volumes (directories under volumesDir) and
// tmpfs mounts, as docker makes them: binds and volumes rbind with rprivate propagation unless
// another is asked for, tmpfs with rw,noexec,nosuid,nodev and the options asked for.
func specMounts(ms []api.Mount, volumesDir string) []specs.Mount {
	var out []specs.Mount
	for _, m := range ms {
		switch m.MountType() {
		case api.MountTmpfs:
			out = append(out, specs.Mount{Destination: m.Destination, Type: "tmpfs", Source: "tmpfs", Options: m.TmpfsMountOptions()})
			continue
		case api.MountVolume:
			m.Source = volumeData(volumesDir, m.Source)
		}
		prop := m.Propagation
		if prop == "" {
			prop = "rprivate"
		}
		opts := []string{"rbind", prop}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		out = append(out, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: opts})
	}
	return out
}
