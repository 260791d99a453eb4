package ovrt

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// dialConsole connects to the caller's console socket and returns the connection as a file to pass
// to the helper.
func dialConsole(path string) (*os.File, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", path, err)
	}
	defer conn.Close()
	f, err := conn.(*net.UnixConn).File()
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", path, err)
	}
	return f, nil
}

// setupConsole runs in the helper, inside the container's mount namespace: it opens a new pty from
// the container's /dev/ptmx, sends the master over the console socket (SCM_RIGHTS, with the pty's
// name as payload, like runc) and makes the slave the process's stdio and controlling terminal.
func setupConsole(sockFD int) error {
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("console: open /dev/ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("console: unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(master, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("console: pty number: %w", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	slave, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("console: open %s: %w", name, err)
	}
	if err := unix.Sendmsg(sockFD, []byte(name), unix.UnixRights(master), nil, 0); err != nil {
		return fmt.Errorf("console: send pty master: %w", err)
	}
	unix.Close(sockFD)
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fmt.Errorf("console: dup pty: %w", err)
		}
	}
	if slave > 2 {
		unix.Close(slave)
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("console: set controlling terminal: %w", err)
	}
	return nil
}
