// Command ovagent is ov's host daemon: the container engine and the host's network data plane, with
// its API on a unix socket. `ovagent shim` (hidden) is the per-container shim it starts.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ovnet/ov/cmd/internal/daemon"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/cmd/internal/shimcmd"
	"github.com/ovnet/ov/internal/agent"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/driver/bridge"
	"github.com/ovnet/ov/internal/image"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ovagent:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	v := viper.New()
	def := agent.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "ovagent",
		Short: "ov's host daemon: container engine and local networks, API on a unix socket",
		Long: `ovagent runs containers (through one shim per container and an OCI runtime) and builds the
host's networks. Configuration comes from flags, OV_* environment variables (OV_ROOT, OV_RUN_DIR,
OV_SOCKET, OV_RUNTIME, ...) and a YAML file (--config, default /etc/ov/agent.yaml if it exists), in that
order of precedence. SIGTERM or SIGINT stops serving; containers keep running.`,
		SilenceUsage: true,
		Args:         cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := readConfigFile(v); err != nil {
				return err
			}
			return run(cmd.Context(), v)
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML configuration file (default /etc/ov/agent.yaml when it exists)")
	f.String("root", def.Root, "directory of persistent state (containers, images, networks)")
	f.String("run-dir", def.RunDir, "directory of runtime state (sockets, bundles, namespaces)")
	f.String("socket", "", "API unix socket (default RUN_DIR/agent.sock)")
	f.String("socket-mode", "0600", "permission bits of the API socket (0660 when --socket-group is set); access to it is root on this host")
	f.String("socket-group", "", "group (name or GID) given access to the API socket: its members are root on this host")
	f.String("runtime", def.Runtime, "OCI runtime binary the shims drive (ovrt or /usr/sbin/runc)")
	f.String("init-path", def.InitPath, "path of the init that containers run with --init get as PID 1 (default: ovinit next to ovagent)")
	f.String("host", def.Host, "this host's name")
	f.String("cgroup-parent", def.CgroupParent, "cgroup under which every container gets its own (PARENT/<id>)")
	f.String("default-bridge", "ov0", "device of the default bridge network (empty: no default network)")
	f.String("default-subnet", "", "subnet of the default bridge network (empty: picked from the pools)")
	f.Int("mtu", 0, "MTU of bridge networks that do not set one (0: the uplink's, from the default route's interface)")
	f.String("metrics-listen", "", "address to serve Prometheus metrics on at /metrics (e.g. 127.0.0.1:9481: loopback, scraped by a local collector; docs/metrics.md); empty: no metrics")
	f.String("log-level", "info", "debug, info, warn or error")
	f.String("log-format", "text", "text or json")
	f.StringSlice("insecure-registry", nil, "registry (HOST[:PORT] or a CIDR) whose TLS certificate is not verified and that may be reached over plain HTTP, as dockerd's; repeatable")
	f.String("registry-certs-dir", image.DefaultCertsDir, "directory of registry CA certificates: DIR/HOST[:PORT]/*.crt are trusted for that registry (docker's /etc/docker/certs.d)")
	addOverlayFlags(f)
	_ = v.BindPFlags(f)
	v.SetEnvPrefix("OV")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	cmd.AddCommand(shimcmd.New(true))
	return cmd
}

func readConfigFile(v *viper.Viper) error { return daemon.ReadConfigFile(v, "/etc/ov/agent.yaml") }

func run(ctx context.Context, v *viper.Viper) error {
	log, err := daemon.NewLogger(v.GetString("log-level"), v.GetString("log-format"))
	if err != nil {
		return err
	}
	cfg := agent.DefaultConfig()
	cfg.Log = log
	cfg.Root = v.GetString("root")
	cfg.RunDir = v.GetString("run-dir")
	cfg.Socket = v.GetString("socket")
	cfg.Runtime = v.GetString("runtime")
	cfg.InitPath = v.GetString("init-path")
	cfg.Host = v.GetString("host")
	cfg.CgroupParent = v.GetString("cgroup-parent")
	if err := socketAccess(v, &cfg); err != nil {
		return err
	}
	if !filepath.IsAbs(cfg.Runtime) {
		p, err := lookPath(cfg.Runtime)
		if err != nil {
			return fmt.Errorf("runtime %q: %w; install it or set --runtime", cfg.Runtime, err)
		}
		cfg.Runtime = p
	}

	// The state directories first, root's alone (tightened if an older version left them open),
	// before the image store or a network driver writes anything under them.
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := cfg.MakeDirs(); err != nil {
		return err
	}

	// A child subreaper: container inits whose shim died are reparented here and reaped (ReapAdopted).
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become a child subreaper: %w", err)
	}

	icfg := image.DefaultConfig()
	icfg.Root, icfg.Log = filepath.Join(cfg.Root, "images"), log
	icfg.Registry = image.RegistryConfig{CertsDir: v.GetString("registry-certs-dir"), Insecure: v.GetStringSlice("insecure-registry")}
	images, err := image.New(icfg)
	if err != nil {
		return err
	}
	cfg.Images = images

	ncfg := bridge.DefaultConfig()
	ncfg.StateDir = filepath.Join(cfg.Root, "network")
	ncfg.NetnsDir = filepath.Join(cfg.RunDir, "netns")
	ncfg.DefaultBridge = v.GetString("default-bridge")
	ncfg.DefaultSubnet = v.GetString("default-subnet")
	ncfg.MTU = v.GetInt("mtu")
	ncfg.Log = log
	br, err := bridge.New(ncfg)
	if err != nil {
		return err
	}
	if err := br.Reconcile(ctx); err != nil {
		log.Error("network reconcile (continuing)", "err", err)
	}
	cfg.Netns, cfg.Drivers = br, map[string]driver.NetworkDriver{"bridge": br}
	defer nameService(&cfg, log).Close()
	reg := daemon.MetricsRegistry(v.GetString("metrics-listen"))
	if reg != nil {
		cfg.Metrics = reg
	}
	ov, err := newOverlay(v, cfg.Host, cfg.Root, cfg.Names, log, cfg.Metrics)
	if err != nil {
		return err
	}
	if ov != nil {
		cfg.Drivers["overlay"] = ov
	}
	if ncfg.DefaultBridge == "" {
		cfg.DefaultNetwork = "none"
	}

	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	defer a.Close()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	chld := make(chan os.Signal, 16)
	signal.Notify(chld, syscall.SIGCHLD)
	go func() {
		for range chld {
			a.ReapAdopted()
		}
	}()
	if err := daemon.ServeMetrics(ctx, v.GetString("metrics-listen"), reg, log); err != nil {
		return err
	}
	go runOverlay(ctx, ov, log)
	return a.Serve(ctx)
}

// socketAccess sets the API socket's mode and group from --socket-mode and --socket-group.
func socketAccess(v *viper.Viper, cfg *agent.Config) error {
	var mode uint32
	if _, err := fmt.Sscanf(v.GetString("socket-mode"), "%o", &mode); err != nil {
		return fmt.Errorf("--socket-mode %q: use octal bits such as 0600", v.GetString("socket-mode"))
	}
	cfg.SocketMode = os.FileMode(mode)
	if g := v.GetString("socket-group"); g != "" {
		var err error
		if cfg.SocketGID, err = lookupGroup(g); err != nil {
			return err
		}
		if !v.IsSet("socket-mode") {
			cfg.SocketMode = 0o660
		}
	}
	return nil
}

// lookupGroup resolves --socket-group: a group name from the group database, or a numeric GID.
func lookupGroup(g string) (int, error) {
	if n, err := strconv.Atoi(g); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("--socket-group %q: use a group name or a GID above 0", g)
		}
		return n, nil
	}
	gr, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("--socket-group %q: %v; create the group (groupadd %s) or give its GID", g, err, g)
	}
	return strconv.Atoi(gr.Gid)
}

func lookPath(name string) (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH") + ":/usr/local/sbin:/usr/sbin:/sbin") {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("not found in PATH")
}
