// Command ovbench-cluster measures how fast the cluster converges, on a lab of its own (internal/lab:
// an underlay namespace with the controller and three host namespaces, each running a real ovagent):
//
//   - convergence: the time from `ovctl run -d` returning on host1 until a container on host2 first
//     reaches the new container over the overlay, beside the same for a container on host1 (local
//     bridge, no controller involved) and the duration of `ovctl run -d` itself;
//   - host death: the time from host3's death (agent SIGKILLed, underlay traffic dropped) until host1 has
//     withdrawn the FDB and neighbour entries that point at it, beside the detection bound memberlist
//     is configured for.
//
// It writes the tables to the "cluster" section of docs/performance.md. Run as root; it touches
// nothing outside the lab it creates, and takes the lab down at the end, after an error or on
// SIGINT/SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/perfdoc"
	"github.com/ovnet/ov/internal/testutil"
)

func main() {
	var o options
	flag.StringVar(&o.out, "out", "docs/performance.md", "markdown file whose \"cluster\" section gets the tables")
	flag.StringVar(&o.bin, "bin", "bin", "directory holding ovagent, ovcontroller, ovctl and ovrt")
	flag.IntVar(&o.runs, "runs", 40, "convergence runs (one new container each)")
	flag.IntVar(&o.deaths, "deaths", 5, "host death runs (partition host3, then heal it)")
	flag.StringVar(&o.subnet, "subnet", "192.168.81.0/24", "underlay subnet of the lab")
	flag.BoolVar(&o.debug, "debug", false, "agents log at debug level (logs are in the lab directory, kept with -keep)")
	flag.BoolVar(&o.keep, "keep", false, "keep the lab's directory (logs) after taking the lab down")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ovbench-cluster:", err)
		os.Exit(1)
	}
}

type options struct {
	out, bin, subnet string
	runs, deaths     int
	debug, keep      bool
}

// bench is the running lab and what the measurements share.
type bench struct {
	lab     *lab.Lab
	network string
}

const (
	netName   = "bench"
	netSubnet = "10.81.0.0/24"
)

func run(ctx context.Context, o options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (it creates network namespaces, mounts and cgroups); run it with sudo")
	}
	if o.runs < 1 || o.runs > 150 || o.deaths < 1 {
		return fmt.Errorf("-runs must be 1-150 (one address each) and -deaths at least 1")
	}
	tmp, err := os.MkdirTemp("", "ovbc")
	if err != nil {
		return err
	}
	defer func() {
		if !o.keep {
			os.RemoveAll(tmp)
		} else {
			fmt.Fprintln(os.Stderr, "lab directory kept:", tmp)
		}
	}()
	image, err := busyboxImage(tmp)
	if err != nil {
		return err
	}
	cfg := lab.DefaultConfig()
	cfg.Prefix = "ovbc"
	if cfg.Subnet, err = netip.ParsePrefix(o.subnet); err != nil {
		return fmt.Errorf("-subnet: %w", err)
	}
	cfg.Hosts = 3
	cfg.Dir = filepath.Join(tmp, "lab")
	cfg.Bin = o.bin
	if o.debug {
		cfg.AgentArgs = []string{"--log-level", "debug"}
	}
	fmt.Fprintf(os.Stderr, "starting lab %s (3 hosts on %s) in %s\n", cfg.Prefix, cfg.Subnet, cfg.Dir)
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	l, err := lab.Up(upCtx, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("start the lab: %w (a lab left by a killed run? its namespaces are %s-*; see ip netns)", err, cfg.Prefix)
	}
	defer func() {
		if o.keep {
			keepLogs(cfg.Dir, filepath.Join(tmp, "logs"))
		}
		if derr := l.Down(context.Background()); derr != nil {
			fmt.Fprintln(os.Stderr, "lab down:", derr)
			if err == nil {
				err = derr
			}
		}
	}()
	b := &bench{lab: l, network: netName}
	for _, h := range l.Hosts {
		if _, err := b.ctl(ctx, h.Name, "image", "import", image, "busybox"); err != nil {
			return err
		}
	}
	if _, err := b.ctl(ctx, "host1", "network", "create", "-d", "overlay", "--subnet", netSubnet, netName); err != nil {
		return err
	}
	conv, err := b.convergence(ctx, o.runs)
	if err != nil {
		return err
	}
	death, err := b.hostDeath(ctx, o.deaths)
	if err != nil {
		return err
	}
	text := conv.markdown() + "\n" + death.markdown() + "\n" + perfdoc.Machine() + "\n"
	fmt.Print(text)
	return perfdoc.WriteSection(o.out, "cluster", "## Cluster convergence and host death\n\n"+text)
}

// keepLogs copies the controller's and agents' logs out of the lab directory, which Down removes.
func keepLogs(labDir, dst string) {
	_ = os.MkdirAll(dst, 0o700)
	logs, _ := filepath.Glob(filepath.Join(labDir, "*.log"))
	agents, _ := filepath.Glob(filepath.Join(labDir, "host*", "agent.log"))
	for _, p := range append(logs, agents...) {
		name := filepath.Base(p)
		if name == "agent.log" {
			name = filepath.Base(filepath.Dir(p)) + ".log"
		}
		if b, err := os.ReadFile(p); err == nil {
			_ = os.WriteFile(filepath.Join(dst, name), b, 0o600)
		}
	}
}

// busyboxImage makes a busybox rootfs tarball in dir for `ovctl image import`.
func busyboxImage(dir string) (string, error) {
	root := filepath.Join(dir, "rootfs")
	if err := testutil.MakeBusyboxRootfs(root); err != nil {
		return "", err
	}
	image := filepath.Join(dir, "busybox.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", image, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("tar the busybox rootfs: %v: %s", err, out)
	}
	return image, os.RemoveAll(root)
}

// ctl runs ovctl on a host of the lab and returns its standard output; it is killed when ctx ends.
func (b *bench) ctl(ctx context.Context, host string, args ...string) (string, error) {
	return b.lab.CtlOutput(ctx, host, args...)
}

// container is a container of the lab on the bench network.
type container struct {
	host, name string
	ip         netip.Addr
	netns      string // path of its network namespace
	ifName     string // its interface on the bench network
}

// start runs a long-lived busybox container on the bench network and reads back its address.
func (b *bench) start(ctx context.Context, host, name string, extra ...string) (container, error) {
	args := append([]string{"run", "-d", "--name", name, "--network", b.network}, extra...)
	if _, err := b.ctl(ctx, host, append(args, "busybox", "sleep", "1000000")...); err != nil {
		return container{}, err
	}
	return b.inspect(ctx, host, name)
}

func (b *bench) inspect(ctx context.Context, host, name string) (container, error) {
	out, err := b.ctl(ctx, host, "inspect", name)
	if err != nil {
		return container{}, err
	}
	var cs []api.Container
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		var c api.Container
		if err2 := json.Unmarshal([]byte(out), &c); err2 != nil {
			return container{}, fmt.Errorf("inspect %s on %s: %v: %s", name, host, err, out)
		}
		cs = []api.Container{c}
	}
	if len(cs) != 1 {
		return container{}, fmt.Errorf("inspect %s on %s: %d records", name, host, len(cs))
	}
	c := container{host: host, name: name, netns: cs[0].NetNS}
	for _, ep := range cs[0].Networks {
		if ep.Network == b.network {
			c.ip, _ = netip.ParseAddr(ep.IP)
			c.ifName = ep.Interface
		}
	}
	if !c.ip.IsValid() || c.netns == "" || c.ifName == "" {
		return container{}, fmt.Errorf("container %s on %s has no address, interface or namespace on %s: %+v", name, host, b.network, cs[0].Networks)
	}
	return c, nil
}
