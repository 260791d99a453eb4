package ovrt

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ovrt/cgroup"
)

// Config configures a Runtime.
type Config struct {
	// Root is the state directory: one subdirectory per container. Default "/run/ovrt".
	Root string
	// Binary is the program started as each container's init and exec helper; it must call Init
	// first thing in main. Default "/proc/self/exe" (the running program). Helpers run it from a
	// detached read-only bind mount (or a sealed memfd copy), never from the writable file.
	Binary string
	// Log receives the runtime's own messages. Default: discard.
	Log *slog.Logger
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config {
	return Config{
		Root:   "/run/ovrt",
		Binary: "/proc/self/exe",
		Log:    slog.New(slog.DiscardHandler),
	}
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		return fmt.Errorf("runtime: root %q must be an absolute path: %w", c.Root, errdefs.ErrInvalidArgument)
	}
	if c.Binary == "" {
		return fmt.Errorf("runtime: binary is empty: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// Runtime creates and finds containers below one state directory.
type Runtime struct {
	cfg Config
	log *slog.Logger

	mu  sync.Mutex
	exe *os.File // protected cfg.Binary (protectedExe), made on first use
}

// New returns a Runtime; empty fields of cfg take their defaults.
func New(cfg Config) (*Runtime, error) {
	d := DefaultConfig()
	if cfg.Root == "" {
		cfg.Root = d.Root
	}
	if cfg.Binary == "" {
		cfg.Binary = d.Binary
	}
	if cfg.Log == nil {
		cfg.Log = d.Log
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Runtime{cfg: cfg, log: cfg.Log.With("component", "runtime")}, nil
}

// sealed returns the protected runtime binary, making it once.
func (r *Runtime) sealed() (*os.File, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exe == nil {
		if err := os.MkdirAll(r.cfg.Root, 0o711); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
		f, err := protectedExe(r.cfg.Binary, r.cfg.Root)
		if err != nil {
			return nil, err
		}
		r.exe = f
	}
	return r.exe, nil
}

// CreateOptions are the per-call inputs of Create besides the bundle's config.json.
type CreateOptions struct {
	// Bundle is the bundle directory (config.json and, usually, the rootfs). Required.
	Bundle string
	// Stdin, Stdout, Stderr are the container process's stdio when it has no terminal. An *os.File
	// is passed through as is (the container inherits it); nil is /dev/null.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// ConsoleSocket is the path of a unix socket; when process.terminal is true the runtime sends
	// the pty master over it (SCM_RIGHTS), as runc does.
	ConsoleSocket string
}

// Create sets up the container described by the bundle and leaves its init waiting for Start:
// namespaces made or joined, cgroup made (limits applied) with the init inside, root filesystem
// mounted and pivoted, everything checked. On error nothing is left behind.
func (r *Runtime) Create(id string, opts CreateOptions) (c *Container, err error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if opts.Bundle == "" {
		return nil, fmt.Errorf("create %s: no bundle given: %w", id, errdefs.ErrInvalidArgument)
	}
	b, err := loadBundle(opts.Bundle)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	s := b.spec
	if s.Process.Terminal && opts.ConsoleSocket == "" {
		return nil, fmt.Errorf("create %s: process.terminal is true but no console socket was given: %w", id, errdefs.ErrInvalidArgument)
	}
	filter := compileSeccomp(r.seccompCache(), s.Linux.Seccomp)
	dir, err := r.makeStateDir(id)
	if err != nil {
		return nil, err
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	undo = append(undo, func() { os.RemoveAll(dir) })

	cgPath := s.Linux.CgroupsPath
	if cgPath == "" {
		cgPath = "/ovrt/" + id
	}
	// A record without a pid says "creating": if this process dies half-way, state shows it and
	// delete --force can still find and remove the cgroup.
	rec := &record{ID: id, Bundle: b.dir, Rootfs: b.rootfs, CgroupPath: cgPath, Spec: s, NewNS: b.newNS}
	if err := writeRecord(dir, rec); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	cg, err := cgroup.New(cgroup.Config{Path: cgPath, Resources: cgroupResources(s)})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	undo = append(undo, func() { _ = cg.Kill(); _ = cg.Delete() })

	fifo, err := makeExecFifo(dir, b)
	if err != nil {
		return nil, fmt.Errorf("create %s: exec fifo: %w", id, err)
	}
	defer fifo.Close()

	exe, err := r.sealed()
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	cfg := &initConfig{Mode: "create", Spec: s, Process: s.Process, Rootfs: b.rootfs, NewNS: b.newNS, CgroupPath: cgPath, FifoFD: fdFirst}
	req := createSpawnReq(b, exe, fifo, opts)
	closeFiles, err := openSpawnFiles(&req, cfg, b, opts.ConsoleSocket)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	defer closeFiles()
	h, err := spawn(req)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	undo = append(undo, h.kill)
	defer h.sync.Close()
	pid := h.pid()
	if err := prepareInit(cg, pid, b, dir); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	res := <-filter
	if res.err != nil {
		return nil, fmt.Errorf("create %s: linux.seccomp: %w", id, res.err)
	}
	cfg.Seccomp = res.prog
	if err := h.send(cfg); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	if err := waitReady(h); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	_, start, ok := procStat(pid)
	if !ok {
		return nil, fmt.Errorf("create %s: container init exited during setup", id)
	}
	rec.Pid, rec.StartTime, rec.Created = pid, start, time.Now().UTC()
	if err := writeRecord(dir, rec); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	r.log.Debug("created", "id", id, "pid", pid, "bundle", b.dir)
	return &Container{rt: r, dir: dir, rec: rec, cg: cg, init: h.cmd, initProc: h.init}, nil
}

// makeStateDir makes the state directory of container id, which must not exist yet.
func (r *Runtime) makeStateDir(id string) (string, error) {
	if err := os.MkdirAll(r.cfg.Root, 0o711); err != nil {
		return "", fmt.Errorf("create %s: state directory: %w", id, err)
	}
	dir := filepath.Join(r.cfg.Root, id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("create %s: a container with this id exists; delete it first: %w", id, errdefs.ErrAlreadyExists)
		}
		return "", fmt.Errorf("create %s: state directory: %w", id, err)
	}
	return dir, nil
}

// makeExecFifo makes the fifo the init blocks on until start (owned by the namespace's root when the
// container has its own user namespace: the init reopens it as that user) and opens it as a path.
func makeExecFifo(dir string, b *bundle) (*os.File, error) {
	fifoPath := filepath.Join(dir, fifoFile)
	if err := unix.Mkfifo(fifoPath, 0o600); err != nil {
		return nil, err
	}
	if b.clone&unix.CLONE_NEWUSER != 0 {
		uid, gid := hostID(b.spec.Linux.UIDMappings, 0), hostID(b.spec.Linux.GIDMappings, 0)
		if err := os.Chown(fifoPath, uid, gid); err != nil {
			return nil, err
		}
	}
	return os.OpenFile(fifoPath, unix.O_PATH|unix.O_CLOEXEC, 0)
}

// createSpawnReq is the request that spawns the init of the container of bundle b: its namespaces,
// its user mappings, the exec fifo and the caller's stdio.
func createSpawnReq(b *bundle, exe, fifo *os.File, opts CreateOptions) spawnReq {
	req := spawnReq{
		mode: "create", exe: exe, extra: []*os.File{fifo},
		stdin: opts.Stdin, stdout: opts.Stdout, stderr: opts.Stderr,
		// The cgroup namespace is made by the init itself once it is in its cgroup (see Init):
		// made at clone time its root would be the runtime's cgroup.
		sys: &syscall.SysProcAttr{Cloneflags: b.clone &^ unix.CLONE_NEWCGROUP},
	}
	if b.joinUser {
		// The namespaces to create must belong to the joined user namespace: the C constructor
		// makes them after it joined it (runc's order), nothing is made at clone time.
		flags := b.clone &^ unix.CLONE_NEWCGROUP
		req.sys.Cloneflags, req.unshare = 0, &flags
	}
	if b.clone&unix.CLONE_NEWUSER != 0 {
		req.sys.UidMappings = idMaps(b.spec.Linux.UIDMappings)
		req.sys.GidMappings = idMaps(b.spec.Linux.GIDMappings)
		req.sys.GidMappingsEnableSetgroups = true
		// The init starts as the host's root, which the new namespace does not map: become the
		// namespace's root (and so gain its capabilities) before exec.
		req.sys.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	return req
}

// openSpawnFiles opens what the init inherits besides the exec fifo: the console socket (when the
// process has a terminal, which replaces its stdio) and the namespaces it joins. closeFiles closes
// them once the init has them.
func openSpawnFiles(req *spawnReq, cfg *initConfig, b *bundle, consoleSocket string) (closeFiles func(), err error) {
	var files []*os.File
	closeFiles = func() {
		for i := len(files) - 1; i >= 0; i-- {
			files[i].Close()
		}
	}
	if b.spec.Process.Terminal {
		sock, err := dialConsole(consoleSocket)
		if err != nil {
			return nil, err
		}
		files = append(files, sock)
		req.extra = append(req.extra, sock)
		cfg.ConsoleFD = fdFirst + 1
		req.sys.Setsid = true
		req.stdin, req.stdout, req.stderr = nil, nil, nil
	}
	var setns []string
	for _, j := range joinOrder(b.join) {
		f, err := os.Open(j.path)
		if err != nil {
			closeFiles()
			return nil, fmt.Errorf("%s namespace %s: %w", j.typ, j.path, err)
		}
		files = append(files, f)
		// The user and mount namespaces can only be joined by a single-threaded process: the C
		// constructor of the init. When it joins a user namespace it joins every other one too,
		// after it, as runc.
		if b.joinUser || j.typ == specs.MountNamespace {
			setns = append(setns, fmt.Sprintf("%s:%d", procNSName[j.typ], fdFirst+len(req.extra)))
			req.extra = append(req.extra, f)
			continue
		}
		req.joins = append(req.joins, nsJoin{j.typ, f})
	}
	req.setns = strings.Join(setns, ",")
	return closeFiles, nil
}

// prepareInit readies what the init (pid) needs before it gets its config: it is put in the cgroup
// before it does anything, and the exec fifo is given to the root of the user namespace it joined.
func prepareInit(cg *cgroup.Cgroup, pid int, b *bundle, dir string) error {
	if err := cg.Add(pid); err != nil {
		return err
	}
	if b.joinUser {
		if err := chownToNSRoot(filepath.Join(dir, fifoFile), pid); err != nil {
			return fmt.Errorf("exec fifo: %w", err)
		}
	}
	return nil
}

// procNSName maps the OCI namespace types to their names under /proc/<pid>/ns.
var procNSName = map[specs.LinuxNamespaceType]string{
	specs.UserNamespace: "user", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts",
	specs.NetworkNamespace: "net", specs.PIDNamespace: "pid", specs.MountNamespace: "mnt",
	specs.CgroupNamespace: "cgroup",
}

// joinOrder returns the namespaces to join in runc's order: user first (the others may belong to
// it), then ipc, uts, net, pid, mount, cgroup.
func joinOrder(join []nsPath) []nsPath {
	var out []nsPath
	for _, t := range []specs.LinuxNamespaceType{specs.UserNamespace, specs.IPCNamespace, specs.UTSNamespace,
		specs.NetworkNamespace, specs.PIDNamespace, specs.MountNamespace, specs.CgroupNamespace} {
		for _, j := range join {
			if j.typ == t {
				out = append(out, j)
			}
		}
	}
	return out
}

// chownToNSRoot gives path to the host ids of root in the user namespace of process pid (read
// from its maps), so that the init can open it once it is that root.
func chownToNSRoot(path string, pid int) error {
	ids := [2]int{}
	for i, name := range []string{"uid_map", "gid_map"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
		if err != nil {
			return err
		}
		ids[i] = -1
		for _, line := range strings.Split(string(b), "\n") {
			var in, out, n uint32
			if _, err := fmt.Sscan(line, &in, &out, &n); err == nil && in == 0 && n > 0 {
				ids[i] = int(out)
			}
		}
	}
	return os.Chown(path, ids[0], ids[1])
}

// waitReady waits for the init's report that it is set up and waiting for start.
func waitReady(h *helper) error {
	m, err := h.receive()
	if err != nil || !m.Ready {
		if err == nil {
			err = errors.New(m.Error)
		} else if errors.Is(err, io.EOF) {
			err = errors.New("container init exited during setup")
		}
		return err
	}
	return nil
}

func idMaps(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, x := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(x.ContainerID), HostID: int(x.HostID), Size: int(x.Size)}
	}
	return out
}

// hostID maps a namespace id to the host's, or -1 (unchanged) when the mappings leave it out.
func hostID(m []specs.LinuxIDMapping, id uint32) int {
	for _, x := range m {
		if id >= x.ContainerID && id-x.ContainerID < x.Size {
			return int(x.HostID + id - x.ContainerID)
		}
	}
	return -1
}

// Load returns the container id, created by any process using the same root, or
// errdefs.ErrNotFound.
func (r *Runtime) Load(id string) (*Container, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	dir := filepath.Join(r.cfg.Root, id)
	rec, err := readRecord(dir, id)
	if err != nil {
		return nil, err
	}
	c := &Container{rt: r, dir: dir, rec: rec}
	if cg, err := cgroup.Load(rec.CgroupPath); err == nil {
		c.cg = cg
	}
	return c, nil
}

// List returns the state of every container under the root, sorted by id.
func (r *Runtime) List() ([]State, error) {
	ents, err := os.ReadDir(r.cfg.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list containers in %s: %w", r.cfg.Root, err)
	}
	var out []State
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		c, err := r.Load(e.Name())
		if err != nil {
			continue // being created or deleted
		}
		out = append(out, c.State())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
