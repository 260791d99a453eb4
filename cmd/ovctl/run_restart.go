package main

import (
	"github.com/spf13/pflag"

	"github.com/ovnet/ov/api"
)

// restartFlags is --restart of run and create (docs/restart.md).
type restartFlags struct {
	restart string
}

func (f *restartFlags) registerRestart(fl *pflag.FlagSet) {
	fl.StringVar(&f.restart, "restart", "no", "restart policy when the container exits: no, on-failure[:MAX], always or unless-stopped")
}

// applyRestart puts the --restart policy into req.
func (f *restartFlags) applyRestart(req *api.ContainerCreate) error {
	p, err := api.ParseRestartPolicy(f.restart)
	if err != nil {
		return err
	}
	if !p.IsNone() {
		req.RestartPolicy = p
	}
	return nil
}
