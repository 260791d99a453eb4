package agent

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovnet/ov/internal/dns"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
)

// Config configures an Agent. cmd/ovagent fills it from flags, OV_* variables and the YAML file.
type Config struct {
	// Root holds persistent state: container records and logs, images, network state.
	// Default /var/lib/ov.
	Root string
	// RunDir holds runtime state that dies with the machine: the API socket, shim sockets, bundles,
	// network namespaces, the OCI runtime's state. Default /run/ov.
	RunDir string
	// Socket is the API's unix socket. Default RunDir/agent.sock.
	Socket string
	// SocketMode is the socket's permission bits, which it has from the moment it exists (see Serve).
	// Default 0600 (root only). Whoever can connect controls the host's containers: that is root on
	// the host.
	SocketMode os.FileMode
	// SocketGID is the socket's group; 0 (default): root's. With a group, SocketMode must give the
	// group read and write (0660), and RunDir is 0710 with that group so its members can reach the
	// socket there.
	SocketGID int
	// Runtime is the OCI runtime binary the shims drive (ovrt, or /usr/sbin/runc). Default: ovrt next to
	// the agent's own binary when it exists, else runc from PATH.
	Runtime string
	// ShimCommand is the command line that starts a shim; the agent appends the shim's flags.
	// Default: ovshim next to the agent's binary when it exists (small, quick to start), else the
	// agent's own binary with the hidden "shim" subcommand.
	ShimCommand []string
	// Host is this host's name, reported by /v1/version. Default os.Hostname().
	Host string
	// CgroupParent is the cgroup under which each container gets its own (CgroupParent/<ID>), in every
	// hierarchy. Default "/ov". Two agents on one machine (the lab) need different parents.
	CgroupParent string
	// DefaultNetwork is the network a container joins when it names none. Default "bridge".
	DefaultNetwork string
	// Images is the image store. Nil: only absolute rootfs directories can be run.
	Images ImageStore
	// Netns creates and removes containers' network namespaces. Nil: only host and none networking.
	Netns driver.NetnsManager
	// Drivers maps a network driver name ("bridge", "overlay") to the driver that builds its networks.
	Drivers map[string]driver.NetworkDriver
	// Resolver and Names are the embedded name service (docs/dns.md): the resolver serving containers
	// on user-defined networks at 127.0.0.11, and the table of names it answers from, which the agent
	// fills with its containers' names. Nil: no name service; every container gets the host's
	// resolv.conf.
	Resolver Resolver
	Names    *dns.Table
	// HostResolvConf is the host's resolv.conf, which containers' resolv.conf files derive from.
	// Default /etc/resolv.conf.
	HostResolvConf string
	// Log receives the agent's logs. Default: discarded.
	Log *slog.Logger
	// Metrics, if set, receives the agent's container metrics (metrics.go, docs/metrics.md); give each
	// agent its own registry. Nil: no metrics.
	Metrics prometheus.Registerer
	// InitPath is the init `run --init` bind-mounts at /sbin/docker-init (dockerd's --init-path).
	// Default: ovinit next to the agent's binary when it exists; empty: --init is refused.
	InitPath string
}

// DefaultConfig returns the defaults described on Config (without Images, Netns and Drivers, which
// cmd/ovagent builds).
func DefaultConfig() Config {
	host, _ := os.Hostname()
	rt := "runc"
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), "ovrt"); fileExists(p) {
			rt = p
		}
	}
	var shimCmd []string
	if self, err := os.Executable(); err == nil {
		shimCmd = []string{self, "shim"}
		if p := filepath.Join(filepath.Dir(self), "ovshim"); fileExists(p) {
			shimCmd = []string{p}
		}
	}
	return Config{
		Root:           "/var/lib/ov",
		RunDir:         "/run/ov",
		SocketMode:     0o600,
		Runtime:        rt,
		ShimCommand:    shimCmd,
		Host:           host,
		DefaultNetwork: "bridge",
		CgroupParent:   "/ov",
		HostResolvConf: "/etc/resolv.conf",
		Log:            slog.New(slog.DiscardHandler),
		InitPath:       defaultInitPath(),
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Validate reports what is wrong with c, filling in the defaults that derive from other fields.
func (c *Config) Validate() error {
	if !filepath.IsAbs(c.Root) || !filepath.IsAbs(c.RunDir) {
		return fmt.Errorf("agent: the root directory %q and the run directory %q must be absolute paths: %w", c.Root, c.RunDir, errdefs.ErrInvalidArgument)
	}
	if c.Socket == "" {
		c.Socket = filepath.Join(c.RunDir, "agent.sock")
	}
	if c.SocketMode == 0 {
		c.SocketMode = 0o600
	}
	if c.SocketMode&^os.ModePerm != 0 || c.SocketMode&0o600 != 0o600 {
		return fmt.Errorf("agent: socket mode %o: use permission bits that let root read and write, such as 0600 or 0660: %w", c.SocketMode, errdefs.ErrInvalidArgument)
	}
	if c.SocketGID < 0 {
		return fmt.Errorf("agent: socket group %d: use a group ID above 0, or 0 for none: %w", c.SocketGID, errdefs.ErrInvalidArgument)
	}
	if c.SocketGID > 0 && c.SocketMode&0o060 != 0o060 {
		return fmt.Errorf("agent: socket group %d with socket mode %04o: the group cannot connect; use socket mode 0660: %w", c.SocketGID, c.SocketMode, errdefs.ErrInvalidArgument)
	}
	if c.CgroupParent == "" {
		c.CgroupParent = "/ov"
	}
	if !strings.HasPrefix(c.CgroupParent, "/") || strings.Contains(c.CgroupParent, "..") {
		return fmt.Errorf("agent: the cgroup parent %q must be an absolute cgroup path such as /ov: %w", c.CgroupParent, errdefs.ErrInvalidArgument)
	}
	if c.Runtime == "" {
		return fmt.Errorf("agent: no OCI runtime configured; set runtime to ovrt or /usr/sbin/runc: %w", errdefs.ErrInvalidArgument)
	}
	if len(c.ShimCommand) == 0 {
		return fmt.Errorf("agent: no shim command configured: %w", errdefs.ErrInvalidArgument)
	}
	if c.DefaultNetwork == "" {
		c.DefaultNetwork = "bridge"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.HostResolvConf == "" {
		c.HostResolvConf = "/etc/resolv.conf"
	}
	return nil
}
