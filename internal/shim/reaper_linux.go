package shim

import (
	"os"
	"os/exec"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper reaps every child of the shim (runtime invocations and, the shim being a child subreaper, the
// container's init and exec processes once their runtime parent has exited) and hands each exit
// status to whoever watches that pid. Statuses of pids nobody watches yet are kept until claimed.
type reaper struct {
	mu        sync.Mutex
	waiters   map[int]chan unix.WaitStatus
	unclaimed map[int]unix.WaitStatus
}

func newReaper() *reaper {
	r := &reaper{waiters: map[int]chan unix.WaitStatus{}, unclaimed: map[int]unix.WaitStatus{}}
	ch := make(chan os.Signal, 64)
	signal.Notify(ch, unix.SIGCHLD)
	go func() {
		for range ch {
			r.reap()
		}
	}()
	return r
}

func (r *reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		r.mu.Lock()
		if c, ok := r.waiters[pid]; ok {
			c <- ws
			delete(r.waiters, pid)
		} else {
			r.unclaimed[pid] = ws
		}
		r.mu.Unlock()
	}
}

// watchLocked returns a channel that receives pid's exit status. r.mu must be held.
func (r *reaper) watchLocked(pid int) <-chan unix.WaitStatus {
	c := make(chan unix.WaitStatus, 1)
	if ws, ok := r.unclaimed[pid]; ok {
		delete(r.unclaimed, pid)
		c <- ws
		return c
	}
	r.waiters[pid] = c
	return c
}

// watch returns a channel that receives the exit status of pid, a child of the shim.
func (r *reaper) watch(pid int) <-chan unix.WaitStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.watchLocked(pid)
}

// run starts cmd and waits for it through the reaper (never through cmd.Wait, which would race with
// it). cmd's stdio must be *os.File or nil.
func (r *reaper) run(cmd *exec.Cmd) (unix.WaitStatus, error) {
	r.mu.Lock()
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		return 0, err
	}
	c := r.watchLocked(cmd.Process.Pid)
	r.mu.Unlock()
	ws := <-c
	_ = cmd.Process.Release()
	return ws, nil
}

// exitCode converts a wait status into a shell-style exit code (128+n for signal n).
func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
