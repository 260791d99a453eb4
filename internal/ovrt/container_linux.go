package ovrt

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ovrt/cgroup"
)

// Container is one container under a Runtime's root. Its methods read the kernel and the state
// file on every call; a Container may be used by one goroutine at a time.
type Container struct {
	rt  *Runtime
	dir string
	rec *record
	cg  *cgroup.Cgroup // nil when the cgroup is gone

	// init is set when this process created the container: the init is our child and Wait works.
	init *exec.Cmd
	// initProc is the init when it is not init's process (see helper.init): then init's process
	// has exited and is reaped after the init.
	initProc *os.Process
	waitOnce sync.Once
	exit     ExitStatus
	waitErr  error
	// execs are the processes this process exec'd into the container (our children).
	execs []*Process
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code, or 128+n when the process was killed by signal n (as a shell reports).
	Code int `json:"code"`
	// Signal is the signal that killed the process, 0 if it exited.
	Signal syscall.Signal `json:"signal,omitempty"`
	// OOMKilled is true when the container's cgroup saw an OOM kill.
	OOMKilled bool `json:"oomKilled,omitempty"`
}

// ID returns the container's id.
func (c *Container) ID() string { return c.rec.ID }

// Pid returns the host pid of the container's init process.
func (c *Container) Pid() int { return c.rec.Pid }

// Spec returns the container's OCI spec as it was created.
func (c *Container) Spec() *specs.Spec { return c.rec.Spec }

func (c *Container) status() specs.ContainerState {
	if c.rec.Pid == 0 {
		return specs.StateCreating
	}
	if !alive(c.rec.Pid, c.rec.StartTime) {
		return specs.StateStopped
	}
	if _, err := os.Lstat(filepath.Join(c.dir, fifoFile)); err == nil {
		return specs.StateCreated
	}
	return specs.StateRunning
}

// State reports the container's OCI state. A stopped container reports no pid.
func (c *Container) State() State {
	st := State{
		State: specs.State{
			Version: specs.Version, ID: c.rec.ID, Status: c.status(), Pid: c.rec.Pid,
			Bundle: c.rec.Bundle, Annotations: map[string]string{},
		},
		Rootfs: c.rec.Rootfs, Created: c.rec.Created, CgroupPath: c.rec.CgroupPath,
	}
	if c.rec.Spec != nil {
		for k, v := range c.rec.Spec.Annotations {
			st.Annotations[k] = v
		}
	}
	if st.Status == specs.StateStopped || st.Status == specs.StateCreating {
		st.Pid = 0
	}
	if c.cg != nil {
		if oom, err := c.cg.OOMKilled(); err == nil && oom {
			st.OOMKilled = true
			st.Annotations[AnnotationOOMKilled] = "true"
		}
	}
	if len(st.Annotations) == 0 {
		st.Annotations = nil
	}
	return st
}

// Start lets a created container's init execute the user's process. It returns once the init has
// been released; an error that happens after that (say the program cannot be executed as the
// configured user) shows on the container's stderr and in its exit code.
func (c *Container) Start() error {
	if st := c.status(); st != specs.StateCreated {
		return fmt.Errorf("start %s: container is %s, not created: %w", c.rec.ID, st, errdefs.ErrConflict)
	}
	fifoPath := filepath.Join(c.dir, fifoFile)
	pidfd, err := c.pidfd()
	if err != nil {
		return fmt.Errorf("start %s: %w", c.rec.ID, err)
	}
	defer unix.Close(pidfd)
	// The init blocks opening the fifo for writing; opening it for reading releases it. If the init
	// dies instead, open the fifo for writing ourselves so that our blocked open returns.
	stopR, stopW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start %s: %w", c.rec.ID, err)
	}
	exited := make(chan struct{})
	defer func() {
		stopW.Close() // wakes the watcher below
		<-exited
		stopR.Close()
	}()
	go func() {
		defer close(exited)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}, {Fd: int32(stopR.Fd()), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if err == nil && fds[0].Revents != 0 {
				if w, err := os.OpenFile(fifoPath, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
			}
			return
		}
	}()
	f, err := os.OpenFile(fifoPath, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("start %s: open exec fifo: %w", c.rec.ID, err)
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("start %s: read exec fifo: %w", c.rec.ID, err)
	}
	if len(data) == 0 {
		return fmt.Errorf("start %s: container init exited before it could start: %w", c.rec.ID, errdefs.ErrConflict)
	}
	if err := os.Remove(fifoPath); err != nil {
		return fmt.Errorf("start %s: remove exec fifo: %w", c.rec.ID, err)
	}
	return nil
}

// pidfd returns a pidfd for the init, checked to be the very process the state file names.
func (c *Container) pidfd() (int, error) {
	fd, err := unix.PidfdOpen(c.rec.Pid, 0)
	if err != nil {
		return -1, fmt.Errorf("container init %d is gone: %w", c.rec.Pid, errdefs.ErrConflict)
	}
	if _, start, ok := procStat(c.rec.Pid); !ok || start != c.rec.StartTime {
		unix.Close(fd)
		return -1, fmt.Errorf("container init %d is gone: %w", c.rec.Pid, errdefs.ErrConflict)
	}
	return fd, nil
}

// Kill sends sig to the container's init, or with all to every process in its cgroup. A stopped
// container cannot be signalled (errdefs.ErrConflict).
func (c *Container) Kill(sig syscall.Signal, all bool) error {
	if all && c.cg != nil {
		pids, err := c.cg.Pids()
		if err != nil {
			return fmt.Errorf("kill %s: %w", c.rec.ID, err)
		}
		for _, p := range pids {
			_ = unix.Kill(p, sig)
		}
		return nil
	}
	if st := c.status(); st == specs.StateStopped || st == specs.StateCreating {
		return fmt.Errorf("kill %s: container is %s, not running: %w", c.rec.ID, st, errdefs.ErrConflict)
	}
	fd, err := c.pidfd()
	if err != nil {
		return fmt.Errorf("kill %s: %w", c.rec.ID, err)
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && err != unix.ESRCH {
		return fmt.Errorf("kill %s: signal %d: %w", c.rec.ID, sig, err)
	}
	return nil
}

// Processes returns the host pids of every process in the container's cgroup.
func (c *Container) Processes() ([]int, error) {
	if c.cg == nil {
		return nil, nil
	}
	pids, err := c.cg.Pids()
	if err != nil {
		return nil, fmt.Errorf("ps %s: %w", c.rec.ID, err)
	}
	return pids, nil
}

// Delete removes a stopped or created container: its processes, cgroup and state. A running
// container is refused (errdefs.ErrConflict) unless force, which kills it first.
func (c *Container) Delete(force bool) error {
	st := c.status()
	if (st == specs.StateRunning || st == specs.StateCreating) && !force {
		return fmt.Errorf("delete %s: container is %s; stop it with kill, or delete it with force (which kills it): %w", c.rec.ID, st, errdefs.ErrConflict)
	}
	for _, p := range c.execs {
		go p.Wait() // reaped as soon as the kill below ends them
	}
	if st == specs.StateCreated || st == specs.StateRunning {
		if err := c.killAndWait(); err != nil {
			return fmt.Errorf("delete %s: %w", c.rec.ID, err)
		}
	}
	if c.init != nil {
		_, _ = c.Wait()
	}
	if c.cg != nil {
		if pids, err := c.cg.Pids(); err == nil && len(pids) > 0 {
			_ = c.cg.Kill()
		}
		if err := c.cg.Delete(); err != nil {
			return fmt.Errorf("delete %s: %w", c.rec.ID, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("delete %s: remove state: %w", c.rec.ID, err)
	}
	c.rt.log.Debug("deleted", "id", c.rec.ID)
	return nil
}

// killAndWait SIGKILLs the init (which takes its pid namespace with it) and waits until it has
// exited, by polling its pidfd (the kernel wakes us; no sleeping).
func (c *Container) killAndWait() error {
	fd, err := c.pidfd()
	if err != nil {
		return nil // already gone
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && err != unix.ESRCH {
		return fmt.Errorf("kill init: %w", err)
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != unix.EINTR {
			return nil
		}
	}
}

// Wait waits for the container's init to exit and returns how it ended. It works only in the
// process that created the container (the init is its child); elsewhere it fails with
// errdefs.ErrConflict. Calling it again returns the same result.
func (c *Container) Wait() (ExitStatus, error) {
	if c.init == nil {
		return ExitStatus{}, fmt.Errorf("wait %s: only the process that created the container can wait for it: %w", c.rec.ID, errdefs.ErrConflict)
	}
	c.waitOnce.Do(func() {
		if c.initProc != nil {
			c.exit, c.waitErr = waitProcess(c.initProc)
			_ = c.init.Wait() // the helper that cloned the init, and the copies of its stdio
		} else {
			c.exit, c.waitErr = waitCmd(c.init)
		}
		if c.cg != nil {
			if oom, err := c.cg.OOMKilled(); err == nil {
				c.exit.OOMKilled = oom
			}
		}
	})
	return c.exit, c.waitErr
}

func waitCmd(cmd *exec.Cmd) (ExitStatus, error) {
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return ExitStatus{}, err
	}
	return exitStatus(cmd.ProcessState), nil
}

// waitProcess waits for a child that exec.Cmd did not start.
func waitProcess(p *os.Process) (ExitStatus, error) {
	ps, err := p.Wait()
	if err != nil {
		return ExitStatus{}, err
	}
	return exitStatus(ps), nil
}

func exitStatus(ps *os.ProcessState) ExitStatus {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ExitStatus{Code: ps.ExitCode()}
	}
	if ws.Signaled() {
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}

// ParseSignal parses a signal as the OCI command line takes it: "KILL", "SIGKILL", "kill" or "9".
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %q is out of range: %w", s, errdefs.ErrInvalidArgument)
		}
		return syscall.Signal(n), nil
	}
	name := s
	if len(name) < 3 || !(name[:3] == "SIG" || name[:3] == "sig") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(strings.ToUpper(name))
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal %q (use a name such as TERM or KILL, or a number): %w", s, errdefs.ErrInvalidArgument)
	}
	return sig, nil
}
