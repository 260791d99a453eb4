package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/image"
)

// initMountPoint is where --init's init is bind-mounted, as Docker's docker-init.
const initMountPoint = "/sbin/docker-init"

// defaultInitPath is ovinit next to the agent's binary, or "" when there is none.
func defaultInitPath() string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	if p := filepath.Join(filepath.Dir(self), "ovinit"); fileExists(p) {
		return p
	}
	return ""
}

// resolveImageFor resolves req's image and fills in what req takes from it (procDefaults).
func (a *Agent) resolveImageFor(ctx context.Context, req *api.ContainerCreate) (createImage, error) {
	img, err := a.resolveImage(ctx, req.Image)
	if err == nil {
		procDefaults(req, img.config)
	}
	return img, err
}

// procDefaults fills in what a create takes from its image, as Docker merges it into the container's
// config: the image's StopSignal unless --stop-signal is given, and the image's labels under the
// container's own.
func procDefaults(req *api.ContainerCreate, img image.RunConfig) {
	if req.StopSignal == "" {
		req.StopSignal = img.StopSignal
	}
	if len(img.Labels) > 0 {
		labels := make(map[string]string, len(img.Labels)+len(req.Labels))
		for k, v := range img.Labels {
			labels[k] = v
		}
		for k, v := range req.Labels {
			labels[k] = v
		}
		req.Labels = labels
	}
}

// extraHosts renders --add-host entries as /etc/hosts lines; host-gateway becomes gateway, the
// address of the host on the container's network (an entry waits for it while it is unknown).
func extraHosts(hosts []string, gateway string) []string {
	var out []string
	for _, h := range hosts {
		name, ip, _ := strings.Cut(h, ":")
		if ip == api.HostGateway {
			if ip = gateway; ip == "" {
				continue
			}
		}
		out = append(out, strings.Trim(ip, "[]")+"\t"+name+"\n")
	}
	return out
}

// userCommand is the container's command as ps and inspect show it: without --init's init, as Docker.
func userCommand(args []string, init bool) []string {
	if init && len(args) >= 2 && args[0] == initMountPoint && args[1] == "--" {
		return args[2:]
	}
	return args
}

// stopSignal is the signal a stop sends first: the container's (or its image's) stop signal, else
// SIGTERM.
func stopSignal(cfg api.ContainerCreate) syscall.Signal {
	if n, err := api.ParseSignalName(cfg.StopSignal); err == nil && cfg.StopSignal != "" {
		return syscall.Signal(n)
	}
	return syscall.SIGTERM
}

// stopTimeout is how long a stop waits for the exit before SIGKILL when the caller gives no timeout
// (a negative one): the container's --stop-timeout, else 10s; -1 waits for ever.
func stopTimeout(cfg api.ContainerCreate, asked time.Duration) time.Duration {
	if asked >= 0 {
		return asked
	}
	n := cfg.StopTimeoutOrDefault()
	if n < 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(n) * time.Second
}
