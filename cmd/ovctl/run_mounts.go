package main

import (
	"github.com/spf13/cobra"

	"github.com/ovnet/ov/api"
)

// mountFlags are run's and create's --mount and --tmpfs (-v is runFlags.volumes).
type mountFlags struct {
	mounts, tmpfs []string
}

func (f *mountFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.mounts, "mount", nil, "attach a mount: type=bind|volume|tmpfs,source=...,target=...[,readonly][,bind-propagation=...][,volume-nocopy][,tmpfs-size=64m][,tmpfs-mode=1777] (repeatable)")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs PATH[:OPTIONS], e.g. /run:size=64m,exec (default options rw,noexec,nosuid,nodev; repeatable)")
}

// apply adds the mounts to req.
func (f *mountFlags) apply(req *api.ContainerCreate) error {
	for _, s := range f.mounts {
		m, err := api.ParseMountFlag(s)
		if err != nil {
			return err
		}
		req.Mounts = append(req.Mounts, m)
	}
	for _, s := range f.tmpfs {
		m, err := api.ParseTmpfs(s)
		if err != nil {
			return err
		}
		req.Mounts = append(req.Mounts, m)
	}
	return nil
}
