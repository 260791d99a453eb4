package api

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ovnet/ov/internal/errdefs"
)

// AgentAPIVersion prefixes every path of the agent's local API (/v1/...).
const AgentAPIVersion = "v1"

// Network modes a container can ask for besides a network name.
const (
	NetworkModeDefault   = "bridge"     // the agent's default bridge network
	NetworkModeContainer = "container:" // prefix: join the network namespace of another container
)

// Container states.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
	// StateUnknown is the status of a quarantined container (see Container.Quarantine) whose shim
	// does not answer: the agent cannot tell whether its process runs.
	StateUnknown = "unknown"
)

// PortMapping publishes a container port on the host (docker's -p [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]).
type PortMapping struct {
	HostIP        string `json:"hostIP,omitempty"` // empty: every host address
	HostPort      uint16 `json:"hostPort"`
	ContainerPort uint16 `json:"containerPort"`
	Protocol      string `json:"protocol"` // tcp or udp
}

// String renders p the way -p takes it.
func (p PortMapping) String() string {
	s := fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, p.Protocol)
	if p.HostIP != "" {
		s = p.HostIP + ":" + s
	}
	return s
}

// Mount bind-mounts a host path into the container (-v HOST:CONTAINER[:ro]).
type Mount struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"readOnly,omitempty"`

	// ctl-mounts: named volumes, tmpfs and --mount (see api/mount.go and docs/volumes.md).
	// Type is bind (the default when empty), volume (Source names a volume of the agent) or tmpfs.
	Type string `json:"type,omitempty"`
	// CreateSource (bind): make a missing Source directory, as -v does; --mount refuses a missing one.
	CreateSource bool `json:"createSource,omitempty"`
	// Propagation (bind): rprivate (the default), private, rshared, shared, rslave or slave.
	Propagation string `json:"propagation,omitempty"`
	// NoCopy (volume): do not copy the image's files at Destination into a new, empty volume.
	NoCopy bool `json:"noCopy,omitempty"`
	// TmpfsSize (bytes; 0: the kernel's default, half the RAM) and TmpfsMode (0: 1777) of a tmpfs.
	TmpfsSize int64  `json:"tmpfsSize,omitempty"`
	TmpfsMode uint32 `json:"tmpfsMode,omitempty"`
	// TmpfsOptions are --tmpfs's mount options (exec, size=64m...), merged over rw,noexec,nosuid,nodev.
	TmpfsOptions []string `json:"tmpfsOptions,omitempty"`
}

// ContainerCreate is the body of POST /v1/containers: what `ovctl run` asks for. Empty fields take the
// image's value (Entrypoint, Cmd, Env, WorkingDir, User) or the agent's default.
type ContainerCreate struct {
	Name       string   `json:"name,omitempty"` // empty: the agent picks one
	Image      string   `json:"image"`          // image reference, or an absolute path to a rootfs directory
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"` // KEY=VALUE, added to the image's
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"` // uid[:gid] or a name from the image's /etc/passwd
	Hostname   string   `json:"hostname,omitempty"`
	Tty        bool     `json:"tty,omitempty"`
	OpenStdin  bool     `json:"openStdin,omitempty"`
	AutoRemove bool     `json:"autoRemove,omitempty"` // --rm: remove when it exits

	Network string        `json:"network,omitempty"` // network name, host, none or container:NAME; empty: bridge
	IP      string        `json:"ip,omitempty"`      // static address on Network
	Ports   []PortMapping `json:"ports,omitempty"`
	Mounts  []Mount       `json:"mounts,omitempty"`
	// NetworkAliases are extra DNS names of the container on Network (--network-alias), which must be
	// a user-defined network.
	NetworkAliases []string `json:"networkAliases,omitempty"`
	// DNS, DNSSearch and DNSOptions are --dns (nameserver addresses), --dns-search (search domains)
	// and --dns-option (resolv.conf options). On a user-defined network the resolver at 127.0.0.11
	// forwards to DNS; elsewhere they are written into the container's resolv.conf.
	DNS        []string `json:"dns,omitempty"`
	DNSSearch  []string `json:"dnsSearch,omitempty"`
	DNSOptions []string `json:"dnsOptions,omitempty"`

	Memory     int64    `json:"memory,omitempty"`    // bytes; 0: no limit
	NanoCPUs   int64    `json:"nanoCPUs,omitempty"`  // 1e9 = one CPU; 0: no limit
	PidsLimit  int64    `json:"pidsLimit,omitempty"` // 0: no limit
	CapAdd     []string `json:"capAdd,omitempty"`
	CapDrop    []string `json:"capDrop,omitempty"`
	ReadOnly   bool     `json:"readOnly,omitempty"`
	Privileged bool     `json:"privileged,omitempty"`

	// LogOpts are the options of the container's log (Docker's json-file --log-opt): "max-size", the
	// size at which the log file is rotated (bytes, or with a unit k, m or g; default 10m), and
	// "max-file", the number of files kept, the current one included (default 3). The agent fills in
	// the defaults, so a container's record shows what applies.
	LogOpts map[string]string `json:"logOpts,omitempty"`

	// ctl-proc: process and security options of `ovctl run` (api/create_proc.go, docs/run-options.md).
	// GroupAdd are --group-add groups (names from the image's /etc/group, or GIDs) added to the
	// user's supplementary groups. Init runs /sbin/docker-init (the agent's ovinit) as PID 1.
	GroupAdd []string          `json:"groupAdd,omitempty"`
	Init     bool              `json:"init,omitempty"`
	Devices  []DeviceMapping   `json:"devices,omitempty"`
	Ulimits  []Ulimit          `json:"ulimits,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// StopSignal is the signal `stop` sends first (default the image's StopSignal, else SIGTERM);
	// StopTimeout the seconds it then waits before SIGKILL (nil: DefaultStopTimeout; -1: for ever).
	StopSignal  string `json:"stopSignal,omitempty"`
	StopTimeout *int   `json:"stopTimeout,omitempty"`
	// SecurityOpt are --security-opt no-new-privileges[=true|false] and seccomp=unconfined|PROFILE
	// (the profile's JSON itself).
	SecurityOpt []string `json:"securityOpt,omitempty"`
	ShmSize     int64    `json:"shmSize,omitempty"`    // bytes of /dev/shm; 0: DefaultShmSize
	ExtraHosts  []string `json:"extraHosts,omitempty"` // NAME:IP lines added to /etc/hosts
	// restart: RestartPolicy is --restart: whether the agent starts the container again when its
	// process exits (docker's policies and backoff, see docs/restart.md).
	RestartPolicy RestartPolicy `json:"restartPolicy,omitzero"`
}

// Log rotation defaults (LogOpts), as Docker's documentation recommends for json-file: at most
// 3 x 10 MiB of log per container.
const (
	DefaultLogMaxSize = "10m"
	DefaultLogMaxFile = "3"
	// MaxLogMaxFile bounds max-file.
	MaxLogMaxFile = 100
)

// LogLimits returns the log rotation LogOpts ask for, defaults filled in: the size in bytes at which
// the file is rotated and the number of files kept.
func (c *ContainerCreate) LogLimits() (maxSize int64, maxFile int, err error) {
	for k := range c.LogOpts {
		if k != "max-size" && k != "max-file" {
			return 0, 0, fmt.Errorf("--log-opt %s: unknown log option; use max-size=SIZE (e.g. 10m) or max-file=N: %w", k, errdefs.ErrInvalidArgument)
		}
	}
	size, file := DefaultLogMaxSize, DefaultLogMaxFile
	if v, ok := c.LogOpts["max-size"]; ok {
		size = v
	}
	if v, ok := c.LogOpts["max-file"]; ok {
		file = v
	}
	maxSize, err = ParseSize(size)
	if err != nil || maxSize <= 0 {
		return 0, 0, fmt.Errorf("--log-opt max-size=%s: want a size above 0 such as 512k, 10m or 1g: %w", size, errdefs.ErrInvalidArgument)
	}
	maxFile, err = strconv.Atoi(file)
	if err != nil || maxFile < 1 || maxFile > MaxLogMaxFile {
		return 0, 0, fmt.Errorf("--log-opt max-file=%s: want a number of files from 1 to %d: %w", file, MaxLogMaxFile, errdefs.ErrInvalidArgument)
	}
	return maxSize, maxFile, nil
}

// ParseSize parses a size in bytes: a whole number with an optional unit k, m or g (powers of 1024,
// as Docker reads them; kb, mb, gb and b are accepted too), such as 512, 100k or 10m.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "b")
	shift := 0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			shift = 10
		case 'm':
			shift = 20
		case 'g':
			shift = 30
		}
		if shift > 0 {
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("size %q: use a whole number with an optional unit k, m or g, e.g. 10m: %w", s, errdefs.ErrInvalidArgument)
	}
	return n << shift, nil
}

// Validate checks a create request without looking at the agent's state.
func (c *ContainerCreate) Validate() error {
	if c.Name != "" && !ValidName(c.Name) {
		return fmt.Errorf("container name %q: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit: %w", c.Name, errdefs.ErrInvalidArgument)
	}
	if c.Image == "" {
		return fmt.Errorf("container: no image given; name an image from `ovctl image ls`: %w", errdefs.ErrInvalidArgument)
	}
	for _, e := range c.Env {
		if k, _, _ := strings.Cut(e, "="); k == "" {
			return fmt.Errorf("environment variable %q: use KEY=VALUE: %w", e, errdefs.ErrInvalidArgument)
		}
	}
	if c.WorkingDir != "" && !filepath.IsAbs(c.WorkingDir) {
		return fmt.Errorf("working directory %q must be absolute: %w", c.WorkingDir, errdefs.ErrInvalidArgument)
	}
	if c.IP != "" {
		if a, err := netip.ParseAddr(c.IP); err != nil || !a.Is4() {
			return fmt.Errorf("--ip %q is not an IPv4 address: %w", c.IP, errdefs.ErrInvalidArgument)
		}
		switch {
		case c.Network == DriverHost || c.Network == DriverNone || strings.HasPrefix(c.Network, NetworkModeContainer):
			return fmt.Errorf("--ip %s cannot be used with --network %s; use a bridge or overlay network: %w", c.IP, c.Network, errdefs.ErrInvalidArgument)
		}
	}
	if len(c.Ports) > 0 && (c.Network == DriverHost || c.Network == DriverNone || strings.HasPrefix(c.Network, NetworkModeContainer)) {
		return fmt.Errorf("-p cannot be used with --network %s; publish ports on a bridge network: %w", c.Network, errdefs.ErrInvalidArgument)
	}
	seen := map[string]bool{}
	for _, p := range c.Ports {
		if p.HostPort == 0 || p.ContainerPort == 0 || (p.Protocol != "tcp" && p.Protocol != "udp") {
			return fmt.Errorf("port mapping %s: ports must be 1-65535 and protocol tcp or udp: %w", p, errdefs.ErrInvalidArgument)
		}
		k := fmt.Sprintf("%s:%d/%s", p.HostIP, p.HostPort, p.Protocol)
		if seen[k] {
			return fmt.Errorf("port mapping %s: host port published twice: %w", p, errdefs.ErrInvalidArgument)
		}
		seen[k] = true
	}
	if err := validateMounts(c.Mounts); err != nil {
		return err
	}
	if c.Memory < 0 || c.NanoCPUs < 0 || c.PidsLimit < 0 {
		return fmt.Errorf("container: --memory, --cpus and --pids-limit must not be negative: %w", errdefs.ErrInvalidArgument)
	}
	if c.Memory > 0 && c.Memory < 6<<20 {
		return fmt.Errorf("--memory %d: the minimum is 6MiB: %w", c.Memory, errdefs.ErrInvalidArgument)
	}
	if _, _, err := c.LogLimits(); err != nil {
		return err
	}
	if err := ValidateAliases(c.Network, c.NetworkAliases); err != nil {
		return err
	}
	if err := c.validateDNSConfig(); err != nil {
		return err
	}
	if err := c.validateRestart(); err != nil {
		return err
	}
	return c.validateProc()
}

// ContainerState is what the shim reports about a container's init process.
type ContainerState struct {
	Status     string    `json:"status"` // created, running, exited
	Pid        int       `json:"pid,omitempty"`
	ExitCode   int       `json:"exitCode"` // 128+n when killed by signal n
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitempty"`
	FinishedAt time.Time `json:"finishedAt,omitempty"`
}

// ContainerEndpoint is a container's attachment to one network as the container sees it.
type ContainerEndpoint struct {
	Network   string `json:"network"`
	Driver    string `json:"driver"`
	Interface string `json:"interface,omitempty"` // inside the container, e.g. eth0
	IP        string `json:"ip,omitempty"`
	PrefixLen int    `json:"prefixLen,omitempty"`
	Gateway   string `json:"gateway,omitempty"`
	MAC       string `json:"mac,omitempty"`
	// Aliases are the container's --network-alias (or network connect --alias) names on Network.
	Aliases []string `json:"aliases,omitempty"`
}

// Container is what GET /v1/containers/{id} answers.
type Container struct {
	ID       string              `json:"id"` // 64 hex digits
	Name     string              `json:"name"`
	Image    string              `json:"image"`             // as asked
	ImageID  string              `json:"imageID,omitempty"` // resolved image digest
	Command  []string            `json:"command"`           // entrypoint + cmd as run
	Created  time.Time           `json:"created"`
	Config   ContainerCreate     `json:"config"`
	State    ContainerState      `json:"state"`
	Networks []ContainerEndpoint `json:"networks,omitempty"`
	NetNS    string              `json:"netns,omitempty"` // path of its network namespace, if it has its own
	Rootfs   string              `json:"rootfs,omitempty"`
	LogPath  string              `json:"logPath,omitempty"`
	// Quarantine, when set, says why the agent has no readable record of this container (its record
	// was unreadable and moved aside, or is missing): the agent found the container from what it left
	// (shim, bundle, rootfs) and keeps it, but knows only what those tell. Remove it with force.
	Quarantine string `json:"quarantine,omitempty"`

	// restart: RestartCount is the number of times the restart policy restarted the container since
	// it was last started by the user (docker's RestartCount). ManuallyStopped is set by stop and kill
	// (a restart policy no longer restarts the container; after an agent restart, unless-stopped leaves
	// it stopped, always starts it) and cleared by start.
	RestartCount    int  `json:"restartCount"`
	ManuallyStopped bool `json:"manuallyStopped,omitempty"`
}

// ShortID is the 12-digit prefix of a container or image ID.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ExecConfig is the body of POST /v1/containers/{id}/exec.
type ExecConfig struct {
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env,omitempty"`
	User       string   `json:"user,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	Tty        bool     `json:"tty,omitempty"`
	Stdin      bool     `json:"stdin,omitempty"`
}

// Validate checks an exec request.
func (e *ExecConfig) Validate() error {
	if len(e.Cmd) == 0 || e.Cmd[0] == "" {
		return fmt.Errorf("exec: no command given: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// Exit is the last frame of an attach or exec stream and the answer of POST .../wait.
type Exit struct {
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"` // the engine could not run the process
}

// Image is one image of the agent's store as GET /v1/images lists it.
type Image struct {
	ID      string    `json:"id"` // sha256:... of the image config
	Refs    []string  `json:"refs,omitempty"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created,omitempty"`
}

// ImageLoadProgress is one line of the JSON-lines answer of POST /v1/images/load and /import; the last
// line has Done or Error set.
type ImageLoadProgress struct {
	Message string   `json:"message,omitempty"`
	Current int64    `json:"current,omitempty"`
	Total   int64    `json:"total,omitempty"`
	Done    bool     `json:"done,omitempty"`
	Images  []Image  `json:"images,omitempty"`
	Error   *Error   `json:"error,omitempty"`
	Refs    []string `json:"refs,omitempty"`
}

// ImageRemoved is the answer of DELETE /v1/images/{ref}: what was untagged and deleted.
type ImageRemoved struct {
	Untagged []string `json:"untagged,omitempty"`
	Deleted  string   `json:"deleted,omitempty"` // image ID, when the image itself went
	Layers   []string `json:"layers,omitempty"`  // diff IDs of the layers deleted with it
}

// NetworkConnect is the body of POST /v1/networks/{name}/connect and /disconnect.
type NetworkConnect struct {
	Container string   `json:"container"`
	IP        string   `json:"ip,omitempty"`
	Aliases   []string `json:"aliases,omitempty"` // --alias: DNS names of the container on the network
	Force     bool     `json:"force,omitempty"`
}

// Version is what GET /v1/version answers.
type Version struct {
	Version    string `json:"version"`
	APIVersion string `json:"apiVersion"`
	Runtime    string `json:"runtime"`
	Host       string `json:"host,omitempty"`

	// ctl-mounts: how the binary was built (WithBuildInfo), for `ovctl version`.
	GoVersion string `json:"goVersion,omitempty"`
	Os        string `json:"os,omitempty"`
	Arch      string `json:"arch,omitempty"`
	GitCommit string `json:"gitCommit,omitempty"`
}
