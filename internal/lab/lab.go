package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ovnet/ov/internal/atomicfile"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ovnet/ov/internal/errdefs"
)

// Config describes a lab.
type Config struct {
	// Prefix names every namespace, link, directory and cgroup of the lab ("ovlab": ovlab-ul,
	// ovlab-h1, ...). Two labs with different prefixes and subnets can run side by side.
	Prefix string
	// Hosts is the number of hosts (1-9).
	Hosts int
	// Subnet is the underlay subnet. The underlay namespace takes .1 (and runs the controller there);
	// host i takes .10+i.
	Subnet netip.Prefix
	// MTU of the underlay links. Overlay networks derive theirs from it (MTU - 50).
	MTU int
	// External is an address "outside the cluster", on the loopback of the underlay namespace, routed
	// to from every host: the target of the overlay gateway tests.
	External netip.Addr
	// Dir holds the lab's state file, logs, and each host's state and run directories.
	Dir string
	// Bin is the directory holding ovagent, ovcontroller and ovctl.
	Bin string
	// ControllerPort is the controller's HTTP port on the underlay address.
	ControllerPort int
	// AgentArgs are extra flags for every ovagent.
	AgentArgs []string
	// EtcdMembers is the size of the external etcd cluster the controller uses; 0 runs the etcd
	// embedded in the controller instead.
	EtcdMembers int
	// EtcdBin is the etcd server run for each external member (Debian's etcd-server).
	EtcdBin string
	// MetricsPort, when not 0, runs every daemon with --metrics-listen (docs/metrics.md): the
	// controller on its underlay address (beside its API), each agent on the loopback of its own
	// host's namespace (as docs/metrics.md advises for agents; the namespaces keep them apart, so
	// all use this port). Lab.Metrics scrapes them from outside. 0: no metrics.
	MetricsPort int
}

// DefaultConfig returns the demo lab: 3 hosts on 192.168.77.0/24, MTU 1500, state in /var/lib/ovlab.
func DefaultConfig() Config {
	return Config{
		Prefix:         "ovlab",
		Hosts:          3,
		Subnet:         netip.MustParsePrefix("192.168.77.0/24"),
		MTU:            1500,
		External:       netip.MustParseAddr("203.0.113.1"),
		Dir:            "/var/lib/ovlab",
		Bin:            "bin",
		ControllerPort: 7480,
		EtcdMembers:    0,               // embedded etcd
		EtcdBin:        "/usr/bin/etcd", // Debian's etcd-server
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Prefix == "" || len(c.Prefix) > 8 || strings.ContainsAny(c.Prefix, "/ ."):
		return fmt.Errorf("lab prefix %q: use 1-8 letters or digits: %w", c.Prefix, errdefs.ErrInvalidArgument)
	case c.Hosts < 1 || c.Hosts > 9:
		return fmt.Errorf("lab: %d hosts; use 1 to 9: %w", c.Hosts, errdefs.ErrInvalidArgument)
	case !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() || c.Subnet.Bits() > 24:
		return fmt.Errorf("lab: underlay subnet %s: use an IPv4 /24 or larger: %w", c.Subnet, errdefs.ErrInvalidArgument)
	case c.MTU < 1280 || c.MTU > 9000:
		return fmt.Errorf("lab: underlay MTU %d: use 1280-9000: %w", c.MTU, errdefs.ErrInvalidArgument)
	case !c.External.Is4() || c.Subnet.Contains(c.External):
		return fmt.Errorf("lab: external address %s must be IPv4 and outside the underlay: %w", c.External, errdefs.ErrInvalidArgument)
	case c.EtcdMembers < 0 || c.EtcdMembers > maxEtcdMembers:
		return fmt.Errorf("lab: %d etcd members; use 0 (embedded) to %d: %w", c.EtcdMembers, maxEtcdMembers, errdefs.ErrInvalidArgument)
	case c.MetricsPort < 0 || c.MetricsPort > 65535 || c.MetricsPort != 0 && c.MetricsPort == c.ControllerPort:
		return fmt.Errorf("lab: metrics port %d: use a free port other than the controller's (%d), or 0 for none: %w", c.MetricsPort, c.ControllerPort, errdefs.ErrInvalidArgument)
	case c.Dir == "" || c.Bin == "":
		return fmt.Errorf("lab: Dir and Bin are required: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// Host is one host of the lab.
type Host struct {
	Name        string `json:"name"`        // host1, host2, ...
	Netns       string `json:"netns"`       // network namespace name (under /run/netns)
	Addr        string `json:"addr"`        // underlay address
	Dir         string `json:"dir"`         // agent state directory
	RunDir      string `json:"runDir"`      // agent run directory (socket, shims, netns mounts)
	Socket      string `json:"socket"`      // agent API socket
	Agent       Proc   `json:"agent"`       // its ovagent (Argv set at its first start)
	Partitioned bool   `json:"partitioned"` // cut off the underlay by Partition
}

// Lab is a running lab; its state is kept in Dir/lab.json.
type Lab struct {
	Config        Config   `json:"config"`
	UnderlayNetns string   `json:"underlayNetns"`
	Bridge        string   `json:"bridge"`
	ControllerURL string   `json:"controllerUrl"`
	ControllerDir string   `json:"controllerDir"`
	Controller    Proc     `json:"controller"`
	Etcd          []Member `json:"etcd,omitempty"` // the external etcd cluster; empty when embedded
	AdminToken    string   `json:"adminToken"`
	JoinToken     string   `json:"joinToken"`
	Hosts         []Host   `json:"hosts"`
}

func (l *Lab) statePath() string { return filepath.Join(l.Config.Dir, "lab.json") }

func (l *Lab) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(l.statePath(), b, 0o600)
}

// Load reads the state of the lab kept in dir.
func Load(dir string) (*Lab, error) {
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no lab in %s (start one with ovlab up): %w", dir, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var l Lab
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("lab state %s is damaged (%v); remove the lab with ovlab down --force", filepath.Join(dir, "lab.json"), err)
	}
	return &l, nil
}

func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for i := 0; i < n; i++ {
		a = a.Next()
	}
	return a
}

// Host returns the named host.
func (l *Lab) Host(name string) (*Host, error) {
	for i := range l.Hosts {
		if l.Hosts[i].Name == name {
			return &l.Hosts[i], nil
		}
	}
	return nil, fmt.Errorf("lab has no host %q; its hosts are host1 to host%d: %w", name, len(l.Hosts), errdefs.ErrNotFound)
}

// Up builds the lab: namespaces and links first, then the controller, then one agent per host. On
// error it tears down what it made.
func Up(ctx context.Context, cfg Config) (_ *Lab, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if old, err := Load(cfg.Dir); err == nil {
		return nil, fmt.Errorf("a lab already runs from %s with %d hosts; take it down first with ovlab down: %w", cfg.Dir, len(old.Hosts), errdefs.ErrAlreadyExists)
	}
	bin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return nil, err
	}
	cfg.Bin = bin
	for _, b := range []string{"ovagent", "ovcontroller", "ovctl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("lab: %s is missing in %s; run make build first: %w", b, bin, errdefs.ErrNotFound)
		}
	}
	if cfg.EtcdMembers > 0 {
		if _, err := os.Stat(cfg.EtcdBin); err != nil {
			return nil, fmt.Errorf("lab: the external etcd needs %s, which is missing; install etcd-server (scripts/deps.sh): %w", cfg.EtcdBin, errdefs.ErrNotFound)
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	l := newLab(cfg)
	if err := l.save(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = l.Down(context.Background())
		}
	}()
	if err := l.buildNetwork(); err != nil {
		return nil, err
	}
	if err := l.startEtcdCluster(ctx); err != nil {
		return nil, err
	}
	if err := l.StartController(ctx); err != nil {
		return nil, err
	}
	for _, h := range l.Hosts {
		if err := l.StartAgent(ctx, h.Name); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// newLab lays out the names and addresses of a lab; it makes nothing.
func newLab(cfg Config) *Lab {
	l := &Lab{
		Config:        cfg,
		UnderlayNetns: cfg.Prefix + "-ul",
		Bridge:        cfg.Prefix + "-br",
		ControllerDir: filepath.Join(cfg.Dir, "controller"),
	}
	ctrlAddr := netip.AddrPortFrom(nth(cfg.Subnet, 1), uint16(cfg.ControllerPort))
	l.ControllerURL = "http://" + ctrlAddr.String()
	l.Etcd = newMembers(cfg, l.UnderlayNetns)
	l.Controller = Proc{
		Netns: l.UnderlayNetns,
		Log:   filepath.Join(cfg.Dir, "controller.log"),
		Argv: append([]string{
			filepath.Join(cfg.Bin, "ovcontroller"),
			"--data-dir", l.ControllerDir,
			"--listen", ctrlAddr.String(),
			"--insecure-listen",       // plain HTTP inside the lab's own namespaces
			"--host-dead-after", "6s", // agents heartbeat every 2s
		}, append(etcdFlags(l.Etcd), l.controllerMetricsFlags()...)...),
	}
	for i := 1; i <= cfg.Hosts; i++ {
		name := "host" + strconv.Itoa(i)
		dir := filepath.Join(cfg.Dir, name)
		l.Hosts = append(l.Hosts, Host{
			Name:   name,
			Netns:  fmt.Sprintf("%s-h%d", cfg.Prefix, i),
			Addr:   nth(cfg.Subnet, 10+i).String(),
			Dir:    filepath.Join(dir, "state"),
			RunDir: filepath.Join(dir, "run"),
			Socket: filepath.Join(dir, "run", "agent.sock"),
			Agent:  Proc{Netns: fmt.Sprintf("%s-h%d", cfg.Prefix, i), Log: filepath.Join(dir, "agent.log")},
		})
	}
	return l
}

// buildNetwork makes the underlay namespace and bridge, then every host namespace wired to it.
func (l *Lab) buildNetwork() error {
	if err := l.buildUnderlay(); err != nil {
		return err
	}
	for i := range l.Hosts {
		if err := l.buildHost(&l.Hosts[i]); err != nil {
			return err
		}
	}
	return nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ipn(ns string, args ...string) error { return run("ip", append([]string{"-n", ns}, args...)...) }

func sysctl(ns, key, val string) error {
	return run("nsenter", "--net=/run/netns/"+ns, "sysctl", "-qw", key+"="+val)
}

// bridgeMAC is the underlay bridge's fixed address: locally administered, from the lab's subnet.
func bridgeMAC(subnet netip.Prefix) string {
	a := subnet.Addr().As4()
	return fmt.Sprintf("02:6f:%02x:%02x:%02x:01", a[0], a[1], a[2])
}

func (l *Lab) buildUnderlay() error {
	c := l.Config
	ns := l.UnderlayNetns
	steps := [][]string{
		{"link", "set", "lo", "up"},
		// The bridge's own address is set, so that it stays: a bridge without one takes the lowest MAC of
		// its ports, and a port joined later (a test's upstream server) would move .1 (the controller, the
		// gateway) to another MAC under the hosts' ARP caches.
		{"link", "add", l.Bridge, "address", bridgeMAC(c.Subnet), "mtu", strconv.Itoa(c.MTU), "type", "bridge"},
		{"addr", "add", netip.PrefixFrom(nth(c.Subnet, 1), c.Subnet.Bits()).String(), "dev", l.Bridge},
		{"link", "set", l.Bridge, "up"},
		{"addr", "add", netip.PrefixFrom(c.External, 32).String(), "dev", "lo"},
	}
	if err := run("ip", "netns", "add", ns); err != nil {
		return err
	}
	for _, s := range steps {
		if err := ipn(ns, s...); err != nil {
			return err
		}
	}
	return sysctl(ns, "net.ipv4.ip_forward", "1")
}

func (l *Lab) buildHost(h *Host) error {
	c := l.Config
	peer := h.Netns + "-ul" // the bridge side, in the underlay namespace
	if len(peer) > 15 {
		peer = peer[len(peer)-15:]
	}
	if err := run("ip", "netns", "add", h.Netns); err != nil {
		return err
	}
	if err := ipn(l.UnderlayNetns, "link", "add", peer, "mtu", strconv.Itoa(c.MTU), "type", "veth", "peer", "name", "eth0", "mtu", strconv.Itoa(c.MTU), "netns", h.Netns); err != nil {
		return err
	}
	for _, s := range [][]string{
		{"link", "set", peer, "master", l.Bridge},
		{"link", "set", peer, "up"},
	} {
		if err := ipn(l.UnderlayNetns, s...); err != nil {
			return err
		}
	}
	for _, s := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", h.Addr + "/" + strconv.Itoa(c.Subnet.Bits()), "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", nth(c.Subnet, 1).String()},
	} {
		if err := ipn(h.Netns, s...); err != nil {
			return err
		}
	}
	for _, d := range []string{h.Dir, h.RunDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// spawn starts a long-lived process of the lab in network namespace ns, in its own session so it
// outlives the caller, with its output appended to logPath.
func spawn(ns, logPath string, argv ...string) (int, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s in %s: %w", argv[0], ns, err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reap it if it exits while we run
	return pid, nil
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// stop sends sig to pid and waits up to timeout for it to exit, then kills it.
func stop(pid int, sig syscall.Signal, timeout time.Duration) {
	if !alive(pid) {
		return
	}
	_ = syscall.Kill(pid, sig)
	deadline := time.Now().Add(timeout)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && alive(pid); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not ready after %v: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
