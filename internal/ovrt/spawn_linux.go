package ovrt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/ovrt/rootdir"
	"github.com/ovnet/ov/internal/ovrt/seccomp"
)

// Environment variables and file descriptors between the runtime and its helper (the init of a
// container, or an exec'd process before it execs). Only Init reads them.
const (
	envMode  = "_OVRT_INIT"  // "create" or "exec"
	envSetns = "_OVRT_SETNS" // read by the C constructor: "user:FD,mnt:FD"
	fdSync   = 3             // socketpair end: config in, one syncMsg out
	fdExe    = 4             // the protected binary the helper runs from (closed before execve)
	fdFirst  = 5             // further files (exec fifo, console socket, namespace fds)
)

// envUnshare, read by the C constructor when the init joins a user namespace: the clone flags of
// the namespaces to create after the joins (see nsenter_linux.c).
const envUnshare = "_OVRT_UNSHARE"

// initConfig is what the runtime sends the helper over the sync socket.
type initConfig struct {
	Mode    string         `json:"mode"`
	Spec    *specs.Spec    `json:"spec"`
	Process *specs.Process `json:"process"`
	Rootfs  string         `json:"rootfs"`
	NewNS   []string       `json:"newNamespaces"`
	// CgroupPath is the container's cgroup (below each hierarchy's root).
	CgroupPath string `json:"cgroupPath"`
	// FifoFD is the exec fifo (opened O_PATH) the init blocks on until Start; 0 for exec.
	FifoFD int `json:"fifoFd,omitempty"`
	// ConsoleFD is a connected unix socket to send the pty master over; 0 means no terminal.
	ConsoleFD int `json:"consoleFd,omitempty"`
	// Seccomp is the container's seccomp filter, compiled by the runtime; nil for none.
	Seccomp *seccomp.Program `json:"seccomp,omitempty"`
}

// compiled is the result of compiling a seccomp profile in the background.
type compiled struct {
	prog *seccomp.Program
	err  error
}

// compileSeccomp compiles the profile (or reads it from the cache) on another goroutine, so that it
// overlaps with the cgroup set-up and the helper's start; receive from the channel when the config is
// due.
func compileSeccomp(cache seccomp.Cache, p *specs.LinuxSeccomp) <-chan compiled {
	ch := make(chan compiled, 1)
	if p == nil {
		ch <- compiled{}
		return ch
	}
	go func() {
		prog, err := cache.Program(p)
		ch <- compiled{prog, err}
	}()
	return ch
}

// syncMsg is the helper's answer: ready (create: set up and waiting for Start) or an error.
type syncMsg struct {
	Ready bool   `json:"ready,omitempty"`
	Pid   int    `json:"pid,omitempty"` // from the C constructor: the init's pid
	Error string `json:"error,omitempty"`
}

// nsJoin is a namespace entered by the spawning thread before it forks the helper, so the helper is
// born inside it (net, uts, ipc, pid, cgroup can be joined from one thread of a Go program).
type nsJoin struct {
	typ  specs.LinuxNamespaceType
	file *os.File
}

// spawnReq describes a helper to start.
type spawnReq struct {
	mode   string
	exe    *os.File   // sealed memfd copy of the runtime binary
	extra  []*os.File // become fds fdFirst, fdFirst+1, ...
	setns  string     // value of envSetns (joins done by the C constructor), "" for none
	joins  []nsJoin   // joins done on the spawning thread
	sys    *syscall.SysProcAttr
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// unshare is the value of envUnshare; when set, the constructor reports the init's pid first.
	unshare *uintptr
}

// helper is a started helper process and the runtime's end of its sync socket.
type helper struct {
	cmd  *exec.Cmd
	sync *os.File
	// init is the container's init when it is not cmd's process: the C constructor cloned it into
	// its pid namespace as our child (CLONE_PARENT) and cmd's process exited.
	init *os.Process
}

// spawn starts the helper. When namespaces must be joined it forks from a dedicated, locked OS
// thread that first setns()es into them; that thread is thrown away afterwards (the goroutine exits
// still locked), so no other goroutine ever runs in those namespaces.
func spawn(r spawnReq) (*helper, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "ovrt-sync")
	child := os.NewFile(uintptr(fds[1]), "ovrt-sync-child")
	defer child.Close()

	cmd := &exec.Cmd{
		Path:        fmt.Sprintf("/proc/self/fd/%d", fdExe),
		Args:        []string{"ovrt", "init"},
		Env:         append([]string{envMode + "=" + r.mode}, rootdir.UnprotectEnv()...),
		Stdin:       r.stdin,
		Stdout:      r.stdout,
		Stderr:      r.stderr,
		ExtraFiles:  append([]*os.File{child, r.exe}, r.extra...),
		SysProcAttr: r.sys,
	}
	if r.setns != "" {
		cmd.Env = append(cmd.Env, envSetns+"="+r.setns)
	}
	if r.unshare != nil {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", envUnshare, *r.unshare))
	}
	if len(r.joins) == 0 {
		err = cmd.Start()
	} else {
		errc := make(chan error, 1)
		go func() {
			goruntime.LockOSThread() // never unlocked: the thread dies with the goroutine
			for _, j := range r.joins {
				if err := unix.Setns(int(j.file.Fd()), int(nsFlags[j.typ])); err != nil {
					errc <- fmt.Errorf("join %s namespace %s: %w", j.typ, j.file.Name(), err)
					return
				}
			}
			errc <- cmd.Start()
		}()
		err = <-errc
	}
	if err != nil {
		parent.Close()
		return nil, fmt.Errorf("start container helper: %w", err)
	}
	h := &helper{cmd: cmd, sync: parent}
	if r.unshare != nil {
		if err := h.receivePid(); err != nil {
			h.kill()
			return nil, fmt.Errorf("start container helper: %w", err)
		}
	}
	return h, nil
}

// receivePid reads the init's pid that the C constructor reports after it joined a user namespace.
func (h *helper) receivePid() error {
	m, err := h.receive()
	switch {
	case err == nil && m.Error != "":
		return errors.New(m.Error)
	case errors.Is(err, io.EOF) || (err == nil && m.Pid == 0):
		return errors.New("container init exited during setup")
	case err != nil:
		return err
	}
	if m.Pid != h.cmd.Process.Pid {
		p, err := os.FindProcess(m.Pid)
		if err != nil {
			return fmt.Errorf("container init %d: %w", m.Pid, err)
		}
		h.init = p
		// The constructor exits once it reported the pid: reap it now (Wait still collects its
		// stdio copies later), so that no zombie is left to whoever inherits it.
		_, _ = h.cmd.Process.Wait()
	}
	return nil
}

// pid is the host pid of the container's init (or of the exec'd process).
func (h *helper) pid() int {
	if h.init != nil {
		return h.init.Pid
	}
	return h.cmd.Process.Pid
}

// send writes the config to the helper. When the helper died before reading it (a namespace it
// could not join), the error is the helper's own message.
func (h *helper) send(cfg *initConfig) error {
	if err := json.NewEncoder(h.sync).Encode(cfg); err != nil {
		if m, rerr := h.receive(); rerr == nil && m.Error != "" {
			return errors.New(m.Error)
		}
		return fmt.Errorf("send config to container helper: %w", err)
	}
	return nil
}

// receive waits for the helper's answer. EOF without a message means the helper exec'd (the socket
// is close-on-exec) or died; died is told apart by the caller.
func (h *helper) receive() (syncMsg, error) {
	var m syncMsg
	err := json.NewDecoder(h.sync).Decode(&m)
	if errors.Is(err, io.EOF) {
		return m, io.EOF
	}
	if err != nil {
		return m, fmt.Errorf("read from container helper: %w", err)
	}
	return m, nil
}

// kill kills and reaps a helper that failed.
func (h *helper) kill() {
	if h.init != nil {
		_ = h.init.Kill()
		_, _ = h.init.Wait()
	}
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
	h.sync.Close()
}

// protectedExe returns a file to run container helpers from that a process inside the container
// cannot modify, even through /proc/<pid>/exe of a helper (CVE-2019-5736): a read-only bind mount of
// the binary, opened O_PATH and detached at once, so it is reachable from nowhere but that fd (as
// runc's bindfd); where mounting is not allowed, a sealed memfd copy.
func protectedExe(path, dir string) (*os.File, error) {
	if f, err := roBindExe(path, dir); err == nil {
		return f, nil
	}
	return sealedExe(path)
}

func roBindExe(path, dir string) (*os.File, error) {
	tmp, err := os.CreateTemp(dir, ".ovrt-exe-")
	if err != nil {
		return nil, err
	}
	name := tmp.Name()
	tmp.Close()
	defer os.Remove(name)
	if err := unix.Mount(path, name, "", unix.MS_BIND, ""); err != nil {
		return nil, err
	}
	defer unix.Unmount(name, unix.MNT_DETACH)
	if err := unix.Mount("", name, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return nil, err
	}
	fd, err := unix.Open(name, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("bind mount of %s is not read-only", path)
	}
	return os.NewFile(uintptr(fd), "ovrt-exe"), nil
}

// sealedExe returns a memfd holding a copy of path, sealed against every change. A process inside
// the container that opens /proc/<pid>/exe of a helper gets this memfd, which it cannot write, grow
// or shrink.
func sealedExe(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open runtime binary %s: %w", path, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("ovrt", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ovrt-memfd")
	for left := fi.Size(); left > 0; {
		n, err := unix.Sendfile(fd, int(src.Fd()), nil, int(left))
		if err != nil || n == 0 {
			f.Close()
			return nil, fmt.Errorf("copy runtime binary to memfd: %v", err)
		}
		left -= int64(n)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal runtime binary memfd: %w", err)
	}
	return f, nil
}
