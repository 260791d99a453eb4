package shim

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
)

// consoleSocket receives the pty master the runtime sends over --console-socket.
type consoleSocket struct {
	l    *net.UnixListener
	path string
}

func newConsoleSocket(path string) (*consoleSocket, error) {
	_ = os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return &consoleSocket{l: l, path: path}, nil
}

// receive accepts one connection and returns the file descriptor it carries. It returns an error
// when the socket is closed first.
func (c *consoleSocket) receive() (*os.File, error) {
	conn, err := c.l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("console socket: read: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("console socket: expected one control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("console socket: expected one file descriptor: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}

func (c *consoleSocket) close() {
	_ = c.l.Close()
	_ = os.Remove(c.path)
}

func setWinsize(f *os.File, ws api.Winsize) error {
	return unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
}
