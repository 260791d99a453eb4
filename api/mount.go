package api

import (
	"encoding/csv"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ovnet/ov/internal/errdefs"
)

// Mount types (Mount.Type; empty is MountBind).
const (
	MountBind   = "bind"
	MountVolume = "volume"
	MountTmpfs  = "tmpfs"
)

// VolumeDriverLocal is the only volume driver: a directory under the agent's root.
const VolumeDriverLocal = "local"

// Volume is a named volume as `ovctl volume inspect` shows it, with Docker's JSON keys so that scripts
// written for `docker volume inspect` read it unchanged.
type Volume struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver"`     // always local
	Mountpoint string            `json:"Mountpoint"` // the directory on the host
	CreatedAt  time.Time         `json:"CreatedAt"`
	Labels     map[string]string `json:"Labels"`
	Options    map[string]string `json:"Options"`
	Scope      string            `json:"Scope"` // always local
}

// VolumeCreate is the body of POST /v1/volumes. An empty Name gets a random one (64 hex digits).
type VolumeCreate struct {
	Name   string            `json:"Name,omitempty"`
	Driver string            `json:"Driver,omitempty"` // empty or local
	Labels map[string]string `json:"Labels,omitempty"`
}

// volumeName is Docker's rule for a local volume's name.
var volumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidVolumeName reports whether s may name a volume (as Docker: [a-zA-Z0-9][a-zA-Z0-9_.-]+, at most
// 255 characters).
func ValidVolumeName(s string) bool { return len(s) <= 255 && volumeName.MatchString(s) }

// ValidateVolumeName explains why s cannot name a volume, in Docker's words.
func ValidateVolumeName(s string) error {
	if ValidVolumeName(s) {
		return nil
	}
	return fmt.Errorf("%q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed (at least 2). If you intended to pass a host directory, use absolute path: %w", s, errdefs.ErrInvalidArgument)
}

// Validate checks a volume create request.
func (v VolumeCreate) Validate() error {
	if v.Driver != "" && v.Driver != VolumeDriverLocal {
		return fmt.Errorf("volume driver %q: only the local driver is supported; leave --driver out: %w", v.Driver, errdefs.ErrInvalidArgument)
	}
	if v.Name == "" {
		return nil
	}
	return ValidateVolumeName(v.Name)
}

// MountType is m's type, bind when unset.
func (m Mount) MountType() string {
	if m.Type == "" {
		return MountBind
	}
	return m.Type
}

var propagations = map[string]bool{"private": true, "rprivate": true, "shared": true, "rshared": true, "slave": true, "rslave": true}

// ParseMount parses -v as Docker does: HOSTPATH:CONTAINERPATH[:OPTIONS] bind-mounts a host path
// (made as a directory when missing), NAME:CONTAINERPATH[:OPTIONS] mounts the named volume (created
// when missing). OPTIONS are comma-separated: ro or rw, nocopy (volumes), a propagation (binds), z/Z
// (accepted and ignored: no SELinux relabelling here).
func ParseMount(s string) (Mount, error) {
	parts := strings.Split(s, ":")
	m := Mount{}
	switch len(parts) {
	case 2, 3:
	case 1:
		return m, fmt.Errorf("volume %q: anonymous volumes are not supported; name one (-v NAME:%s) or bind a host path (-v HOSTPATH:%s): %w", s, s, s, errdefs.ErrInvalidArgument)
	default:
		return m, fmt.Errorf("volume %q: use HOSTPATH:CONTAINERPATH[:ro] or NAME:CONTAINERPATH[:ro]: %w", s, errdefs.ErrInvalidArgument)
	}
	m.Source, m.Destination = parts[0], parts[1]
	if !filepath.IsAbs(m.Destination) {
		return m, fmt.Errorf("volume %q: the container path %q must be absolute: %w", s, m.Destination, errdefs.ErrInvalidArgument)
	}
	if filepath.IsAbs(m.Source) {
		m.CreateSource = true
	} else {
		if err := ValidateVolumeName(m.Source); err != nil {
			return m, fmt.Errorf("volume %q: %w", s, err)
		}
		m.Type = MountVolume
	}
	if len(parts) == 3 {
		for _, o := range strings.Split(parts[2], ",") {
			switch {
			case o == "ro" || o == "rw":
				m.ReadOnly = o == "ro"
			case o == "nocopy" && m.Type == MountVolume:
				m.NoCopy = true
			case propagations[o] && m.Type != MountVolume:
				m.Propagation = o
			case o == "z" || o == "Z":
			default:
				return m, fmt.Errorf("volume %q: invalid mode %q; use ro, rw, nocopy (volumes) or a propagation such as rshared (binds): %w", s, o, errdefs.ErrInvalidArgument)
			}
		}
	}
	return m, nil
}

// parseBool reads a --mount flag value as Docker does: empty (the key alone), true/false, 1/0.
func parseBool(key, v string) (bool, error) {
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("--mount: invalid value for %s: %q; use true or false: %w", key, v, errdefs.ErrInvalidArgument)
	}
	return b, nil
}

// ParseMountFlag parses --mount as Docker does: comma-separated KEY=VALUE fields (CSV quoting
// allowed): type=bind|volume|tmpfs (default volume), source|src, target|destination|dst,
// readonly|ro[=true|false], bind-propagation, volume-nocopy, tmpfs-size, tmpfs-mode.
func ParseMountFlag(s string) (Mount, error) {
	r := csv.NewReader(strings.NewReader(s))
	fields, err := r.Read()
	if err != nil {
		return Mount{}, fmt.Errorf("--mount %q: %v: %w", s, err, errdefs.ErrInvalidArgument)
	}
	m := Mount{Type: MountVolume}
	for _, f := range fields {
		key, val, hasVal := strings.Cut(f, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if !hasVal && key != "readonly" && key != "ro" && key != "volume-nocopy" {
			return Mount{}, fmt.Errorf("--mount %q: invalid field %q: must be a key=value pair: %w", s, f, errdefs.ErrInvalidArgument)
		}
		switch key {
		case "type":
			m.Type = val
		case "source", "src":
			m.Source = val
		case "target", "destination", "dst":
			m.Destination = val
		case "readonly", "ro":
			m.ReadOnly, err = parseBool(key, val)
		case "bind-propagation":
			m.Propagation = val
		case "volume-nocopy":
			m.NoCopy, err = parseBool(key, val)
		case "tmpfs-size":
			m.TmpfsSize, err = ParseSize(val)
			if err != nil || m.TmpfsSize <= 0 {
				err = fmt.Errorf("--mount: tmpfs-size %q: use a size such as 64m: %w", val, errdefs.ErrInvalidArgument)
			}
		case "tmpfs-mode":
			var mode uint64
			mode, err = strconv.ParseUint(val, 8, 32)
			if err != nil || mode > 0o7777 {
				err = fmt.Errorf("--mount: tmpfs-mode %q: use an octal mode such as 1777 or 700: %w", val, errdefs.ErrInvalidArgument)
			}
			m.TmpfsMode = uint32(mode)
		case "consistency", "z", "Z":
		default:
			return Mount{}, fmt.Errorf("--mount %q: unexpected key %q in %q: %w", s, key, f, errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return Mount{}, err
		}
	}
	if m.Destination == "" {
		return Mount{}, fmt.Errorf("--mount %q: target is required (target=/path): %w", s, errdefs.ErrInvalidArgument)
	}
	return m, m.Validate()
}

// ParseTmpfs parses --tmpfs PATH[:OPTIONS] (OPTIONS comma-separated mount options such as
// size=64m,mode=1770,exec), mounted over Docker's defaults rw,noexec,nosuid,nodev.
func ParseTmpfs(s string) (Mount, error) {
	dst, opts, _ := strings.Cut(s, ":")
	m := Mount{Type: MountTmpfs, Destination: dst}
	if opts != "" {
		m.TmpfsOptions = strings.Split(opts, ",")
	}
	return m, m.Validate()
}

// Validate checks one mount of a create request.
func (m Mount) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("invalid mount config for type %q: %s: %w", m.MountType(), fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(m.Destination) {
		return bad("the target %q must be an absolute path", m.Destination)
	}
	if filepath.Clean(m.Destination) == "/" {
		return bad("the target cannot be /")
	}
	if m.Propagation != "" && (m.MountType() != MountBind || !propagations[m.Propagation]) {
		return bad("bind-propagation %q: use private, rprivate, shared, rshared, slave or rslave, on binds only", m.Propagation)
	}
	if m.MountType() != MountTmpfs && (m.TmpfsSize != 0 || m.TmpfsMode != 0 || len(m.TmpfsOptions) > 0) {
		return bad("tmpfs options are for type=tmpfs only")
	}
	if m.NoCopy && m.MountType() != MountVolume {
		return bad("volume-nocopy is for type=volume only")
	}
	switch m.MountType() {
	case MountBind:
		if !filepath.IsAbs(m.Source) {
			return bad("the source %q must be an absolute host path", m.Source)
		}
	case MountVolume:
		if m.Source == "" {
			return bad("anonymous volumes are not supported; name one with source=NAME")
		}
		if err := ValidateVolumeName(m.Source); err != nil {
			return err
		}
	case MountTmpfs:
		if m.Source != "" {
			return bad("source must not be given for a tmpfs")
		}
		for _, o := range m.TmpfsOptions {
			if o == "" || strings.ContainsAny(o, " \t") {
				return bad("tmpfs option %q: use comma-separated options such as size=64m,mode=1777,exec", o)
			}
		}
	default:
		return fmt.Errorf("mount type %q: use bind, volume or tmpfs: %w", m.Type, errdefs.ErrInvalidArgument)
	}
	return nil
}

// validateMounts checks a create request's mounts: each valid, no two on one target.
func validateMounts(ms []Mount) error {
	seen := map[string]bool{}
	for _, m := range ms {
		if err := m.Validate(); err != nil {
			return err
		}
		d := filepath.Clean(m.Destination)
		if seen[d] {
			return fmt.Errorf("duplicate mount point: %s; mount one thing per container path: %w", d, errdefs.ErrInvalidArgument)
		}
		seen[d] = true
	}
	return nil
}

// tmpfsFlagPairs groups the mount flags that cancel each other, for TmpfsMountOptions.
var tmpfsFlagPairs = map[string]string{
	"rw": "ro", "ro": "ro", "exec": "exec", "noexec": "exec", "suid": "suid", "nosuid": "suid",
	"dev": "dev", "nodev": "dev", "atime": "atime", "noatime": "atime", "relatime": "atime",
	"strictatime": "atime", "diratime": "diratime", "nodiratime": "diratime", "sync": "sync", "async": "sync",
}

// TmpfsMountOptions are the options of a tmpfs mount m as Docker makes them: rw,noexec,nosuid,nodev
// (read-only with ReadOnly), then --tmpfs's options, the size and the mode, a later option replacing
// an earlier one of the same kind (exec replaces noexec, size=1m replaces size=2m).
func (m Mount) TmpfsMountOptions() []string {
	opts := []string{"rw", "noexec", "nosuid", "nodev"}
	if m.ReadOnly {
		opts[0] = "ro"
	}
	opts = append(opts, m.TmpfsOptions...)
	if m.TmpfsSize > 0 {
		opts = append(opts, "size="+strconv.FormatInt(m.TmpfsSize, 10))
	}
	if m.TmpfsMode != 0 {
		opts = append(opts, "mode="+strconv.FormatUint(uint64(m.TmpfsMode), 8))
	}
	seen := map[string]bool{}
	var out []string
	for i := len(opts) - 1; i >= 0; i-- {
		kind := opts[i]
		if k, _, ok := strings.Cut(kind, "="); ok {
			kind = k + "="
		} else if g, ok := tmpfsFlagPairs[kind]; ok {
			kind = g
		}
		if seen[kind] {
			continue
		}
		seen[kind] = true
		out = append([]string{opts[i]}, out...)
	}
	return out
}
