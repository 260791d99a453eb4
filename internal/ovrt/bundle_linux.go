package ovrt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
)

// validID tells whether id is 1-128 letters, digits, '_', '.', '+' or '-', starting with a letter or
// digit. A loop, not a regexp: compiling `[...]{0,127}` at every start of the runtime (each container
// runs it three times or more) took half a millisecond and 1,700 allocations.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '+' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func checkID(id string) error {
	if !validID(id) {
		return fmt.Errorf("container id %q: use 1-128 letters, digits, '_', '.', '+' or '-', starting with a letter or digit: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// nsFlags maps the OCI namespace types to clone flags.
var nsFlags = map[specs.LinuxNamespaceType]uintptr{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
}

// bundle is a loaded and checked OCI bundle.
type bundle struct {
	dir    string
	rootfs string
	spec   *specs.Spec
	// clone are the flags of the namespaces to create; join the namespaces to enter by path, in the
	// order to enter them.
	clone uintptr
	join  []nsPath
	newNS []string
	// joinUser: the container joins an existing user namespace (join has it).
	joinUser bool
}

type nsPath struct {
	typ  specs.LinuxNamespaceType
	path string
}

// loadBundle reads dir/config.json and checks everything Create relies on, so that a bad bundle
// fails before anything is created. Errors wrap errdefs.ErrInvalidArgument or ErrNotFound and name
// the file and field.
func loadBundle(dir string) (*bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %q: %w", dir, err)
	}
	cfgPath := filepath.Join(abs, "config.json")
	data, err := os.ReadFile(cfgPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("bundle %s: no config.json (write one with `ovrt spec`): %w", abs, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle %s: read config.json: %w", abs, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("bundle %s: config.json is not a valid OCI runtime spec: %v: %w", abs, err, errdefs.ErrInvalidArgument)
	}
	b := &bundle{dir: abs, spec: &s}
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("bundle %s: config.json: %w", abs, err)
	}
	return b, nil
}

func invalid(format string, a ...any) error {
	return fmt.Errorf(format+": %w", append(a, errdefs.ErrInvalidArgument)...)
}

func (b *bundle) check() error {
	s := b.spec
	if s.Root == nil || s.Root.Path == "" {
		return invalid("root.path is missing (the bundle's root filesystem)")
	}
	b.rootfs = s.Root.Path
	if !filepath.IsAbs(b.rootfs) {
		b.rootfs = filepath.Join(b.dir, b.rootfs)
	}
	fi, err := os.Stat(b.rootfs)
	if err != nil {
		return fmt.Errorf("root.path: root filesystem %s: %w", b.rootfs, errdefs.ErrNotFound)
	}
	if !fi.IsDir() {
		return invalid("root.path: %s is not a directory", b.rootfs)
	}
	if s.Process == nil {
		return invalid("process is missing")
	}
	if err := checkProcess(s.Process); err != nil {
		return err
	}
	if s.Linux == nil {
		return invalid("linux is missing")
	}
	seen := map[specs.LinuxNamespaceType]bool{}
	for i, ns := range s.Linux.Namespaces {
		flag, ok := nsFlags[ns.Type]
		if !ok {
			return invalid("linux.namespaces[%d]: unknown namespace type %q (ovrt supports pid, network, mount, ipc, uts, user, cgroup)", i, ns.Type)
		}
		if seen[ns.Type] {
			return invalid("linux.namespaces[%d]: namespace %q listed twice", i, ns.Type)
		}
		seen[ns.Type] = true
		if ns.Path == "" {
			b.clone |= flag
			b.newNS = append(b.newNS, string(ns.Type))
			continue
		}
		if _, err := os.Stat(ns.Path); err != nil {
			return fmt.Errorf("linux.namespaces[%d]: %s namespace %s: %v: %w", i, ns.Type, ns.Path, err, errdefs.ErrNotFound)
		}
		b.join = append(b.join, nsPath{ns.Type, ns.Path})
		if ns.Type == specs.UserNamespace {
			b.joinUser = true
		}
	}
	if !seen[specs.MountNamespace] {
		return invalid("linux.namespaces: a mount namespace is required (add {\"type\": \"mount\"})")
	}
	// A joined user namespace has its maps already (runc 1.1 ignores the spec's then, and so does
	// ovrt); a new one needs them.
	if b.clone&unix.CLONE_NEWUSER != 0 && (len(s.Linux.UIDMappings) == 0 || len(s.Linux.GIDMappings) == 0) {
		return invalid("linux.uidMappings and linux.gidMappings are required with a user namespace")
	}
	if !seen[specs.UserNamespace] && (len(s.Linux.UIDMappings) > 0 || len(s.Linux.GIDMappings) > 0) {
		return invalid("linux.uidMappings given without a user namespace; add {\"type\": \"user\"}")
	}
	for _, d := range s.Linux.Devices {
		if _, err := deviceMode(d); err != nil {
			return err
		}
	}
	if p := s.Linux.CgroupsPath; p != "" && !strings.HasPrefix(p, "/") {
		return invalid("linux.cgroupsPath %q: use an absolute cgroupfs path such as /ov/<id> (systemd slices are not supported)", p)
	}
	for i, m := range s.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return invalid("mounts[%d]: destination %q is not absolute", i, m.Destination)
		}
		if isBind(m) && !filepath.IsAbs(m.Source) {
			s.Mounts[i].Source = filepath.Join(b.dir, m.Source) // relative to the bundle
		}
	}
	return nil
}

// checkProcess validates the parts of a process that can be checked before it starts.
func checkProcess(p *specs.Process) error {
	if len(p.Args) == 0 || p.Args[0] == "" {
		return invalid("process.args is empty (the command to run)")
	}
	if p.Cwd != "" && !filepath.IsAbs(p.Cwd) {
		return invalid("process.cwd %q is not absolute", p.Cwd)
	}
	if _, err := resolveCaps(p.Capabilities); err != nil {
		return err
	}
	for _, r := range p.Rlimits {
		if _, ok := rlimits[r.Type]; !ok {
			return invalid("process.rlimits: unknown limit %q", r.Type)
		}
	}
	return nil
}

var rlimits = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}
