// Command ovinit is the small init `ovctl run --init` runs as a container's PID 1, like Docker's
// docker-init (tini): the agent bind-mounts it read-only at /sbin/docker-init and runs
// `/sbin/docker-init -- COMMAND [ARG...]`. It starts COMMAND as its child, forwards every signal it
// receives to it (so `ovctl stop` reaches a program that, as PID 1, would ignore SIGTERM), reaps every
// zombie the container's orphans leave behind, and exits with the child's exit status (128+n when a
// signal n killed it) as soon as the child exits. It is built static (CGO_ENABLED=0) so that it runs in
// any image.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"unsafe"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "ovinit: usage: ovinit -- COMMAND [ARG...]")
		return 1
	}
	// Every signal, before the child exists: none sent in between is lost.
	sigs := make(chan os.Signal, 128)
	signal.Notify(sigs)
	pid, code := start(args)
	if pid == 0 {
		return code
	}
	for sig := range sigs {
		s, ok := sig.(syscall.Signal)
		if !ok {
			continue
		}
		switch s {
		case syscall.SIGCHLD:
			if code, done := reap(pid); done {
				return code
			}
		case syscall.SIGURG: // the Go runtime's own preemption signal
		default:
			_ = syscall.Kill(pid, s)
		}
	}
	return 1
}

// start starts the child in its own process group, in the foreground of the terminal if stdin is one
// (so that ^C reaches it once, from the terminal, not twice). It returns the child's pid, or 0 and the
// exit code a shell would give (127: not found, 126: cannot be run).
func start(args []string) (int, int) {
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "ovinit: %s: %v\n", args[0], err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 0, 127
		}
		return 0, 126
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if isTerminal(0) {
		attr.Foreground, attr.Ctty = true, 0
	}
	pa := &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}, Sys: attr}
	pid, err := syscall.ForkExec(path, args, pa)
	if err != nil && attr.Foreground {
		// stdin is a terminal but not this session's: run the child without it in the foreground.
		attr.Foreground = false
		pid, err = syscall.ForkExec(path, args, pa)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ovinit: exec %s: %v\n", args[0], err)
		if errors.Is(err, syscall.ENOENT) {
			return 0, 127
		}
		return 0, 126
	}
	return pid, 0
}

// reap waits for every exited process (the child and the orphans reparented here) and reports the
// child's exit code once it is among them.
func reap(child int) (code int, done bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return code, done
		}
		if pid != child {
			continue
		}
		done = true
		code = ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
}

func isTerminal(fd int) bool {
	var t syscall.Termios
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return e == 0
}
