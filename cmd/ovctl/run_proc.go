package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// procFlags are the process and security flags of run and create (docs/run-options.md), with Docker's
// names and defaults.
type procFlags struct {
	fl                                             *pflag.FlagSet
	init                                           bool
	stopSignal, shmSize                            string
	stopTimeout                                    int
	groupAdd, devices, ulimits, labels, labelFiles []string
	securityOpts, addHosts, envFiles               []string
}

func (p *procFlags) register(fl *pflag.FlagSet) {
	p.fl = fl
	fl.StringArrayVar(&p.groupAdd, "group-add", nil, "add a supplementary group: a name from the image's /etc/group or a GID (repeatable)")
	fl.BoolVar(&p.init, "init", false, "run an init (the agent's ovinit, at /sbin/docker-init) as PID 1 that forwards signals and reaps zombies")
	fl.StringArrayVar(&p.devices, "device", nil, "add a host device HOST[:CONTAINER[:PERMS]], PERMS of r, w, m (default rwm) (repeatable)")
	fl.StringArrayVar(&p.ulimits, "ulimit", nil, "set a resource limit NAME=SOFT[:HARD] (nofile, nproc, core, stack, memlock, ...; -1: unlimited) (repeatable)")
	fl.StringArrayVarP(&p.labels, "label", "l", nil, "set a label KEY=VALUE (repeatable); see ps --filter label=")
	fl.StringArrayVar(&p.labelFiles, "label-file", nil, "read labels from a file of KEY=VALUE lines (repeatable)")
	fl.StringVar(&p.stopSignal, "stop-signal", "", "signal that stops the container (default: the image's StopSignal, else SIGTERM)")
	fl.IntVar(&p.stopTimeout, "stop-timeout", api.DefaultStopTimeout, "seconds a stop waits for the exit before SIGKILL (-1: for ever)")
	fl.StringArrayVar(&p.securityOpts, "security-opt", nil, "no-new-privileges[=true|false] (default true in ov), seccomp=unconfined or seccomp=PROFILE.json (Docker's format) (repeatable)")
	fl.StringVar(&p.shmSize, "shm-size", "", "size of /dev/shm, e.g. 128m (default 64m)")
	fl.StringArrayVar(&p.addHosts, "add-host", nil, "add a line to /etc/hosts NAME:IP (IP may be host-gateway, the host on the container's network) (repeatable)")
	fl.StringArrayVar(&p.envFiles, "env-file", nil, "read environment variables from a file of KEY=VALUE lines (KEY alone: from this environment; # comments) (repeatable)")
}

// apply adds the flags to req. Variables of --env-file come before those of -e, which win.
func (p *procFlags) apply(req *api.ContainerCreate) error {
	req.GroupAdd, req.Init, req.StopSignal = p.groupAdd, p.init, p.stopSignal
	if p.fl != nil && p.fl.Changed("stop-timeout") {
		t := p.stopTimeout
		req.StopTimeout = &t
	}
	for _, s := range p.devices {
		d, err := api.ParseDevice(s)
		if err != nil {
			return err
		}
		req.Devices = append(req.Devices, d)
	}
	for _, s := range p.ulimits {
		u, err := api.ParseUlimit(s)
		if err != nil {
			return err
		}
		req.Ulimits = append(req.Ulimits, u)
	}
	for _, s := range p.addHosts {
		h, err := api.ParseExtraHost(s)
		if err != nil {
			return err
		}
		req.ExtraHosts = append(req.ExtraHosts, h)
	}
	if p.shmSize != "" {
		n, err := api.ParseSize(p.shmSize)
		if err != nil || n == 0 {
			return fmt.Errorf("--shm-size %q: give a size above 0 with an optional unit k, m or g, e.g. 128m: %w", p.shmSize, errdefs.ErrInvalidArgument)
		}
		req.ShmSize = n
	}
	if err := p.applyFiles(req); err != nil {
		return err
	}
	return p.applySecurityOpts(req)
}

// applyFiles reads --env-file and --label-file, and sets the labels (--label wins over a file's).
func (p *procFlags) applyFiles(req *api.ContainerCreate) error {
	var env, labels []string
	for _, f := range p.envFiles {
		vars, err := readKVFile(f, "--env-file", os.LookupEnv)
		if err != nil {
			return err
		}
		env = append(env, vars...)
	}
	if len(env) > 0 {
		req.Env = append(env, req.Env...)
	}
	for _, f := range p.labelFiles {
		kvs, err := readKVFile(f, "--label-file", nil)
		if err != nil {
			return err
		}
		labels = append(labels, kvs...)
	}
	m, err := api.ParseLabels(append(labels, p.labels...))
	if err != nil {
		return err
	}
	req.Labels = m
	return nil
}

func readKVFile(path, flag string, lookup func(string) (string, bool)) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v; give a readable file of KEY=VALUE lines: %w", flag, err, errdefs.ErrInvalidArgument)
	}
	defer f.Close()
	return api.ParseEnvFile(f, flag+" "+path, lookup)
}

// applySecurityOpts checks --security-opt; seccomp=FILE is sent as the file's content (as docker).
func (p *procFlags) applySecurityOpts(req *api.ContainerCreate) error {
	for _, o := range p.securityOpts {
		if v, ok := strings.CutPrefix(o, api.SecurityOptSeccomp+"="); ok && v != "unconfined" && v != "" {
			b, err := os.ReadFile(v)
			if err != nil {
				return fmt.Errorf("--security-opt seccomp=%s: %v; give unconfined or the path of a seccomp profile in Docker's JSON format: %w", v, err, errdefs.ErrInvalidArgument)
			}
			if !json.Valid(b) {
				return fmt.Errorf("--security-opt seccomp=%s: the file is not valid JSON; give a seccomp profile in Docker's JSON format: %w", v, errdefs.ErrInvalidArgument)
			}
			o = api.SecurityOptSeccomp + "=" + string(b)
		} else if _, _, err := api.ParseSecurityOpt(o); err != nil {
			return err
		}
		req.SecurityOpt = append(req.SecurityOpt, o)
	}
	return nil
}
