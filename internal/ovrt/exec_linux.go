package ovrt

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
)

// ExecOptions describe a process to run inside a running container.
type ExecOptions struct {
	// Process is the process to run (args, env, cwd, user, capabilities, noNewPrivileges, rlimits,
	// terminal). The container's seccomp profile applies to it too.
	Process specs.Process
	// Stdin, Stdout, Stderr as in CreateOptions.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// ConsoleSocket receives the pty master when Process.Terminal is true.
	ConsoleSocket string
}

// Process is a process started by Exec.
type Process struct {
	// Pid is the process's pid on the host.
	Pid int
	h   *helper

	once sync.Once
	exit ExitStatus
	err  error
}

// Wait waits for the exec'd process and returns how it ended. Calling it again returns the same.
func (p *Process) Wait() (ExitStatus, error) {
	p.once.Do(func() { p.exit, p.err = waitCmd(p.h.cmd) })
	return p.exit, p.err
}

// execOrder is the order in which exec joins the container's namespaces. The spawning thread joins
// the first five (its children are born inside them); the C constructor of the helper joins user,
// then mount, before the Go runtime starts.
var execOrder = []struct {
	typ  specs.LinuxNamespaceType
	file string
}{
	{specs.IPCNamespace, "ipc"}, {specs.UTSNamespace, "uts"}, {specs.NetworkNamespace, "net"},
	{specs.PIDNamespace, "pid"}, {specs.CgroupNamespace, "cgroup"},
	{specs.UserNamespace, "user"}, {specs.MountNamespace, "mnt"},
}

// Exec starts a second process inside the container, in all of its namespaces and its cgroup, with
// the container's seccomp profile. It returns once the process has executed its program (or with the
// reason it could not).
func (c *Container) Exec(opts ExecOptions) (*Process, error) {
	id := c.rec.ID
	if st := c.status(); st != specs.StateRunning && st != specs.StateCreated {
		return nil, fmt.Errorf("exec in %s: container is %s: %w", id, st, errdefs.ErrConflict)
	}
	p := opts.Process
	if err := checkProcess(&p); err != nil {
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	if p.Terminal && opts.ConsoleSocket == "" {
		return nil, fmt.Errorf("exec in %s: process.terminal is true but no console socket was given: %w", id, errdefs.ErrInvalidArgument)
	}
	var filter <-chan compiled
	if c.rec.Spec.Linux != nil {
		filter = compileSeccomp(c.rt.seccompCache(), c.rec.Spec.Linux.Seccomp)
	} else {
		filter = compileSeccomp(c.rt.seccompCache(), nil)
	}
	exe, err := c.rt.sealed()
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	req := spawnReq{mode: "exec", exe: exe, stdin: opts.Stdin, stdout: opts.Stdout, stderr: opts.Stderr, sys: &syscall.SysProcAttr{}}
	cfg := &initConfig{Mode: "exec", Spec: c.rec.Spec, Process: &p, NewNS: c.rec.NewNS}
	if p.Terminal {
		sock, err := dialConsole(opts.ConsoleSocket)
		if err != nil {
			return nil, fmt.Errorf("exec in %s: %w", id, err)
		}
		defer sock.Close()
		req.extra = append(req.extra, sock)
		cfg.ConsoleFD = fdFirst
		req.sys.Setsid = true
		req.stdin, req.stdout, req.stderr = nil, nil, nil
	}
	var setns []string
	for _, ns := range execOrder {
		f, err := os.Open("/proc/" + strconv.Itoa(c.rec.Pid) + "/ns/" + ns.file)
		if err != nil {
			return nil, fmt.Errorf("exec in %s: open %s namespace of init: %w", id, ns.typ, err)
		}
		defer f.Close()
		if same, err := sameNS(f, "/proc/self/ns/"+ns.file); err != nil || same {
			continue
		}
		if ns.typ == specs.UserNamespace || ns.typ == specs.MountNamespace {
			setns = append(setns, fmt.Sprintf("%s:%d", ns.file, fdFirst+len(req.extra)))
			req.extra = append(req.extra, f)
			continue
		}
		req.joins = append(req.joins, nsJoin{ns.typ, f})
	}
	// The namespaces were opened from the pid in the state file: make sure it is still our init.
	fd, err := c.pidfd()
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	unix.Close(fd)
	req.setns = strings.Join(setns, ",")
	h, err := spawn(req)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer h.sync.Close()
	if c.cg != nil {
		if err := c.cg.Add(h.cmd.Process.Pid); err != nil {
			h.kill()
			return nil, fmt.Errorf("exec in %s: %w", id, err)
		}
	}
	res := <-filter
	if res.err != nil {
		h.kill()
		return nil, fmt.Errorf("exec in %s: linux.seccomp: %w", id, res.err)
	}
	cfg.Seccomp = res.prog
	if err := h.send(cfg); err != nil {
		h.kill()
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	m, err := h.receive()
	switch {
	case errors.Is(err, io.EOF):
		// Executed: the sync socket closed on exec. It is our child: Delete reaps it if need be,
		// since the container's pid namespace cannot finish dying while it is an unreaped zombie.
		p := &Process{Pid: h.cmd.Process.Pid, h: h}
		c.execs = append(c.execs, p)
		return p, nil
	case err != nil:
		h.kill()
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	default:
		h.kill()
		return nil, fmt.Errorf("exec in %s: %s", id, m.Error)
	}
}

func sameNS(f *os.File, other string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		return false, err
	}
	if err := unix.Stat(other, &b); err != nil {
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}
