package ovrt

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelSigaction is the kernel's struct sigaction (x86_64, arm64: handler, flags, restorer, mask).
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

const sigIgn = 1 // SIG_IGN

// resetSignals gives the container's process the signal state of a fresh login: every signal the
// runtime inherited as ignored goes back to its default action, and no signal is blocked. execve keeps
// ignored dispositions and the mask, and whoever starts the runtime may have changed them: the agent's
// shim ignores SIGINT and SIGHUP to outlive its terminal, and a shell started with SIGINT ignored
// keeps it ignored for good (Ctrl-C on the container's terminal would do nothing). Caught signals
// need no reset (execve resets them); only ignored ones are touched, which the Go runtime does not
// use, so this is safe on the locked thread right before execve.
func resetSignals() error {
	for sig := 1; sig <= 64; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			continue
		}
		var old kernelSigaction
		if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
			continue // a signal number the kernel does not know
		}
		if old.handler != sigIgn {
			continue
		}
		dfl := kernelSigaction{}
		if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0); e != 0 {
			return fmt.Errorf("reset the action of signal %d: %w", sig, e)
		}
	}
	var none unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &none, nil); err != nil {
		return fmt.Errorf("unblock signals: %w", err)
	}
	return nil
}
