package agent

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
)

// umaskMu serialises the agent's umask changes; the umask is the process's.
var umaskMu sync.Mutex

// afterListen, when set (tests), is called as soon as the socket exists, before listenSocket returns.
var afterListen func(path string)

// listenSocket listens on the unix socket path so that at no moment can anyone connect whom mode and
// gid do not allow: the socket is bound under a umask that leaves only the owner bits of mode (it is
// root's alone from birth), then given group gid (when > 0), then the group and other bits of mode.
// Each step only widens access toward what was asked. A stale socket at path is removed first.
func listenSocket(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	umaskMu.Lock()
	old := syscall.Umask(int(0o777 &^ (mode & 0o700)))
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("agent: listen on %s: %w", path, err)
	}
	if afterListen != nil {
		afterListen(path)
	}
	if gid > 0 {
		if err := os.Chown(path, 0, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("agent: give socket %s to group %d: %w", path, gid, err)
		}
	}
	if mode&0o077 != 0 {
		if err := os.Chmod(path, mode); err != nil {
			l.Close()
			return nil, fmt.Errorf("agent: socket %s mode %04o: %w", path, mode, err)
		}
	}
	return l, nil
}
