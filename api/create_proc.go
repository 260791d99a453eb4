package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
)

// DeviceMapping is one --device HOST[:CONTAINER[:PERMS]]: the device node PathOnHost is created at
// PathInContainer and allowed in the container's device cgroup with CgroupPermissions (r, w, m).
type DeviceMapping struct {
	PathOnHost        string `json:"pathOnHost"`
	PathInContainer   string `json:"pathInContainer"`
	CgroupPermissions string `json:"cgroupPermissions"`
}

// Ulimit is one --ulimit NAME=SOFT[:HARD] (Docker's names: nofile, nproc, core, ...); -1 is unlimited.
type Ulimit struct {
	Name string `json:"name"`
	Soft int64  `json:"soft"`
	Hard int64  `json:"hard"`
}

// DefaultStopTimeout is the seconds `ovctl stop` waits before SIGKILL when neither it (-t) nor the
// container (--stop-timeout) says otherwise, as Docker.
const DefaultStopTimeout = 10

// DefaultShmSize is the size of a container's /dev/shm when --shm-size is not given, as Docker.
const DefaultShmSize = 64 << 20

// HostGateway is the --add-host address that stands for the host (the gateway of the container's
// network), as Docker's "host-gateway".
const HostGateway = "host-gateway"

// ParseDevice parses --device HOST[:CONTAINER[:PERMS]] as Docker: CONTAINER defaults to HOST and PERMS
// (any of r, w and m) to rwm; HOST:PERMS is accepted too.
func ParseDevice(s string) (DeviceMapping, error) {
	bad := func(why string) (DeviceMapping, error) {
		return DeviceMapping{}, fmt.Errorf("--device %q: %s; use HOSTPATH[:CONTAINERPATH[:PERMISSIONS]], e.g. /dev/fuse:/dev/fuse:rwm: %w", s, why, errdefs.ErrInvalidArgument)
	}
	parts := strings.Split(s, ":")
	d := DeviceMapping{CgroupPermissions: "rwm"}
	switch len(parts) {
	case 3:
		if !validDeviceMode(parts[2]) {
			return bad(fmt.Sprintf("permissions %q are not a combination of r, w and m", parts[2]))
		}
		d.CgroupPermissions = parts[2]
		d.PathInContainer = parts[1]
	case 2:
		if validDeviceMode(parts[1]) {
			d.CgroupPermissions = parts[1]
		} else {
			d.PathInContainer = parts[1]
		}
	case 1:
	default:
		return bad("too many ':'")
	}
	d.PathOnHost = parts[0]
	if d.PathInContainer == "" {
		d.PathInContainer = d.PathOnHost
	}
	if !path.IsAbs(d.PathOnHost) || !path.IsAbs(d.PathInContainer) {
		return bad("both paths must be absolute")
	}
	return d, nil
}

func validDeviceMode(m string) bool {
	if m == "" || len(m) > 3 {
		return false
	}
	seen := map[rune]bool{}
	for _, c := range m {
		if (c != 'r' && c != 'w' && c != 'm') || seen[c] {
			return false
		}
		seen[c] = true
	}
	return true
}

// UlimitNames maps Docker's --ulimit names to the kernel's resource names (RLIMIT_...).
var UlimitNames = map[string]string{
	"core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
	"locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE",
	"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
	"rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}

func ulimitNameList() string {
	names := make([]string, 0, len(UlimitNames))
	for n := range UlimitNames {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// ParseUlimit parses --ulimit NAME=SOFT[:HARD] as Docker: HARD defaults to SOFT, -1 is unlimited.
func ParseUlimit(s string) (Ulimit, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok {
		return Ulimit{}, fmt.Errorf("--ulimit %q: use NAME=SOFT[:HARD], e.g. nofile=1024:2048: %w", s, errdefs.ErrInvalidArgument)
	}
	u := Ulimit{Name: name}
	if err := u.parseValues(val); err != nil {
		return Ulimit{}, fmt.Errorf("--ulimit %q: %v: %w", s, err, errdefs.ErrInvalidArgument)
	}
	return u, u.Validate()
}

func (u *Ulimit) parseValues(val string) error {
	soft, hard, hasHard := strings.Cut(val, ":")
	var err error
	if u.Soft, err = strconv.ParseInt(soft, 10, 64); err != nil {
		return fmt.Errorf("soft limit %q is not a number (use -1 for unlimited)", soft)
	}
	u.Hard = u.Soft
	if hasHard {
		if u.Hard, err = strconv.ParseInt(hard, 10, 64); err != nil {
			return fmt.Errorf("hard limit %q is not a number (use -1 for unlimited)", hard)
		}
	}
	return nil
}

// Validate checks the name and that the soft limit does not exceed the hard one.
func (u Ulimit) Validate() error {
	if _, ok := UlimitNames[u.Name]; !ok {
		return fmt.Errorf("--ulimit %s: unknown limit; use one of %s: %w", u.Name, ulimitNameList(), errdefs.ErrInvalidArgument)
	}
	if u.Soft < -1 || u.Hard < -1 {
		return fmt.Errorf("--ulimit %s=%d:%d: limits are 0 or more, or -1 for unlimited: %w", u.Name, u.Soft, u.Hard, errdefs.ErrInvalidArgument)
	}
	if u.Hard != -1 && (u.Soft == -1 || u.Soft > u.Hard) {
		return fmt.Errorf("--ulimit %s=%d:%d: the soft limit exceeds the hard limit; lower SOFT or raise HARD: %w", u.Name, u.Soft, u.Hard, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ParseExtraHost parses --add-host NAME:IP (Docker also takes NAME=IP) and returns it as "NAME:IP".
// IP may be HostGateway.
func ParseExtraHost(s string) (string, error) {
	name, ip, ok := strings.Cut(s, "=")
	if !ok {
		name, ip, ok = strings.Cut(s, ":")
	}
	if err := validExtraHost(name, ip, ok); err != nil {
		return "", fmt.Errorf("--add-host %q: %v; use NAME:IP, e.g. db:10.0.0.5 or gw:host-gateway: %w", s, err, errdefs.ErrInvalidArgument)
	}
	return name + ":" + ip, nil
}

func validExtraHost(name, ip string, ok bool) error {
	if !ok || name == "" || ip == "" {
		return fmt.Errorf("missing name or address")
	}
	if strings.ContainsAny(name, " \t\n#") {
		return fmt.Errorf("host name %q has spaces or '#'", name)
	}
	if ip == HostGateway {
		return nil
	}
	if _, err := netip.ParseAddr(strings.Trim(ip, "[]")); err != nil {
		return fmt.Errorf("%q is not an IP address", ip)
	}
	return nil
}

// SecurityOpt names of --security-opt.
const (
	SecurityOptNoNewPrivileges = "no-new-privileges"
	SecurityOptSeccomp         = "seccomp"
)

// ParseSecurityOpt checks one --security-opt as it travels to the agent: no-new-privileges[=|:true|false],
// seccomp=unconfined, or seccomp=PROFILE where PROFILE is the JSON profile itself (the client reads the
// file, as docker does). It returns the option's name and value.
func ParseSecurityOpt(s string) (key, value string, err error) {
	key, value, ok := strings.Cut(s, "=")
	if !ok && strings.HasPrefix(s, SecurityOptNoNewPrivileges+":") {
		key, value, ok = strings.Cut(s, ":")
	}
	switch key {
	case SecurityOptNoNewPrivileges:
		if !ok {
			return key, "true", nil
		}
		if b, err := strconv.ParseBool(value); err != nil {
			return "", "", fmt.Errorf("--security-opt %s: %q is not true or false: %w", key, value, errdefs.ErrInvalidArgument)
		} else {
			return key, strconv.FormatBool(b), nil
		}
	case SecurityOptSeccomp:
		if value == "unconfined" {
			return key, value, nil
		}
		if !ok || value == "" {
			return "", "", fmt.Errorf("--security-opt seccomp: give seccomp=unconfined or seccomp=PROFILE.json: %w", errdefs.ErrInvalidArgument)
		}
		if !json.Valid([]byte(value)) {
			return "", "", fmt.Errorf("--security-opt seccomp: the profile is not valid JSON; give a profile in Docker's seccomp JSON format: %w", errdefs.ErrInvalidArgument)
		}
		return key, value, nil
	}
	if strings.HasPrefix(s, "apparmor") || strings.HasPrefix(s, "label") || strings.HasPrefix(s, "systempaths") {
		return "", "", fmt.Errorf("--security-opt %s: not supported by ov (no AppArmor, SELinux or unmasked paths); use no-new-privileges or seccomp: %w", s, errdefs.ErrInvalidArgument)
	}
	return "", "", fmt.Errorf("--security-opt %q: unknown option; use no-new-privileges[=true|false], seccomp=unconfined or seccomp=PROFILE.json: %w", s, errdefs.ErrInvalidArgument)
}

// ParseEnvFile reads an --env-file (or --label-file) in Docker's format: one KEY=VALUE a line, the
// value taken as written (no quotes removed); leading white space and blank or '#' lines are
// skipped. A line with KEY alone takes lookup(KEY) and is left out when lookup finds nothing (with
// lookup nil it becomes KEY=, as --label-file does).
func ParseEnvFile(r io.Reader, name string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if n == 1 {
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, hasVal := strings.Cut(line, "=")
		if key == "" {
			return nil, fmt.Errorf("%s line %d: %q has no variable name; write KEY=VALUE: %w", name, n, line, errdefs.ErrInvalidArgument)
		}
		if strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("%s line %d: variable %q contains white space; write KEY=VALUE: %w", name, n, key, errdefs.ErrInvalidArgument)
		}
		switch {
		case hasVal:
			out = append(out, key+"="+val)
		case lookup == nil:
			out = append(out, key+"=")
		default:
			if v, ok := lookup(key); ok {
				out = append(out, key+"="+v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// ParseLabels turns KEY=VALUE (or KEY, an empty value) strings into a label map.
func ParseLabels(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" || strings.ContainsAny(k, " \t\n") {
			return nil, fmt.Errorf("--label %q: use KEY=VALUE with a key without spaces: %w", kv, errdefs.ErrInvalidArgument)
		}
		out[k] = v
	}
	return out, nil
}

// signalNames are the Linux signals by name, for --stop-signal.
var signalNames = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
	"USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17,
	"CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
	"VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}

// ParseSignalName parses a signal as --stop-signal takes it (as Docker): a name with or without
// SIG (TERM, SIGTERM, sigterm), SIGRTMIN+N / SIGRTMAX-N, or a number from 1 to 64.
func ParseSignalName(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal %q: numbers go from 1 to 64: %w", s, errdefs.ErrInvalidArgument)
		}
		return n, nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if n, ok := signalNames[name]; ok {
		return n, nil
	}
	for _, rt := range []struct {
		prefix string
		base   int
		sign   int
	}{{"RTMIN+", 34, 1}, {"RTMAX-", 64, -1}} {
		if v, ok := strings.CutPrefix(name, rt.prefix); ok {
			if k, err := strconv.Atoi(v); err == nil && k >= 0 && k <= 30 {
				return rt.base + rt.sign*k, nil
			}
		}
	}
	return 0, fmt.Errorf("signal %q: unknown; use a name such as TERM, INT, QUIT or HUP, or a number: %w", s, errdefs.ErrInvalidArgument)
}

// validateProc checks the ctl-proc fields of a create request.
func (c *ContainerCreate) validateProc() error {
	for _, g := range c.GroupAdd {
		if g == "" || strings.ContainsAny(g, ": \t\n") {
			return fmt.Errorf("--group-add %q: give a group name or a numeric GID: %w", g, errdefs.ErrInvalidArgument)
		}
	}
	for _, d := range c.Devices {
		if !path.IsAbs(d.PathOnHost) || !path.IsAbs(d.PathInContainer) || !validDeviceMode(d.CgroupPermissions) {
			return fmt.Errorf("--device %s:%s:%s: use absolute paths and permissions of r, w and m: %w", d.PathOnHost, d.PathInContainer, d.CgroupPermissions, errdefs.ErrInvalidArgument)
		}
	}
	seen := map[string]bool{}
	for _, u := range c.Ulimits {
		if err := u.Validate(); err != nil {
			return err
		}
		if seen[u.Name] {
			return fmt.Errorf("--ulimit %s given twice; give each limit once: %w", u.Name, errdefs.ErrInvalidArgument)
		}
		seen[u.Name] = true
	}
	if c.StopSignal != "" {
		if _, err := ParseSignalName(c.StopSignal); err != nil {
			return fmt.Errorf("--stop-signal: %w", err)
		}
	}
	if c.StopTimeout != nil && *c.StopTimeout < -1 {
		return fmt.Errorf("--stop-timeout %d: give seconds, or -1 to wait for ever: %w", *c.StopTimeout, errdefs.ErrInvalidArgument)
	}
	for _, o := range c.SecurityOpt {
		if _, _, err := ParseSecurityOpt(o); err != nil {
			return err
		}
	}
	if c.ShmSize < 0 {
		return fmt.Errorf("--shm-size %d: must be more than 0: %w", c.ShmSize, errdefs.ErrInvalidArgument)
	}
	return c.validateExtraHosts()
}

func (c *ContainerCreate) validateExtraHosts() error {
	for _, h := range c.ExtraHosts {
		name, ip, ok := strings.Cut(h, ":")
		if err := validExtraHost(name, ip, ok); err != nil {
			return fmt.Errorf("--add-host %q: %v; use NAME:IP: %w", h, err, errdefs.ErrInvalidArgument)
		}
		if ip == HostGateway && (c.Network == DriverNone || c.Network == DriverHost || strings.HasPrefix(c.Network, NetworkModeContainer)) {
			return fmt.Errorf("--add-host %s: host-gateway needs a network with a gateway, not --network %s; give the address instead: %w", h, c.Network, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// StopTimeoutOrDefault is the seconds a stop waits before SIGKILL: the container's --stop-timeout, else
// DefaultStopTimeout. -1 means for ever.
func (c *ContainerCreate) StopTimeoutOrDefault() int {
	if c.StopTimeout != nil {
		return *c.StopTimeout
	}
	return DefaultStopTimeout
}
