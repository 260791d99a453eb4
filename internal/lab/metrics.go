package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// Metrics of the lab's daemons (Config.MetricsPort). The controller serves them on its underlay
// address, the agents on the loopback of their own namespaces: the test process, in the root
// namespace, reaches neither directly, so Metrics fetches them with busybox wget run by nsenter in
// the daemon's network namespace (a child process: the caller's threads never change namespace).

// controllerMetricsAddr is where the controller serves its metrics.
func (l *Lab) controllerMetricsAddr() string {
	return netip.AddrPortFrom(nth(l.Config.Subnet, 1), uint16(l.Config.MetricsPort)).String()
}

// agentMetricsAddr is where every agent serves its metrics, inside its host's namespace.
func (l *Lab) agentMetricsAddr() string {
	return "127.0.0.1:" + strconv.Itoa(l.Config.MetricsPort)
}

func (l *Lab) controllerMetricsFlags() []string {
	if l.Config.MetricsPort == 0 {
		return nil
	}
	return []string{"--metrics-listen", l.controllerMetricsAddr()}
}

func (l *Lab) agentMetricsFlags() []string {
	if l.Config.MetricsPort == 0 {
		return nil
	}
	return []string{"--metrics-listen", l.agentMetricsAddr()}
}

// Metrics scrapes the metrics of the controller (host "controller") or of the named host's agent
// and returns them in the Prometheus text format.
func (l *Lab) Metrics(ctx context.Context, host string) (string, error) {
	if l.Config.MetricsPort == 0 {
		return "", fmt.Errorf("lab %s runs without metrics; set Config.MetricsPort (ovlab up --metrics-port)", l.Config.Prefix)
	}
	ns, addr := l.UnderlayNetns, l.controllerMetricsAddr()
	if host != "controller" {
		h, err := l.Host(host)
		if err != nil {
			return "", err
		}
		ns, addr = h.Netns, l.agentMetricsAddr()
	}
	cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+ns, "/bin/busybox", "wget", "-q", "-O", "-", "http://"+addr+"/metrics")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scrape the metrics of %s at %s in namespace %s: %v: %s", host, addr, ns, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
