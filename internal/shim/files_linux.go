package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// The shim keeps files for the agent across its restarts: the sockets of the container's embedded
// resolver (internal/dns, docs/dns.md "Agent restarts"). The agent hands them over (POST /files/keep)
// after it starts serving the container, and the next agent takes copies back (POST /files/take).
// The shim never uses them; they close when it exits. Both are upgrades: after the 101, the
// descriptors travel as SCM_RIGHTS on the shim's unix socket, which only the agent can reach (it is in
// the agent's run directory; the shim runs in the agent's namespaces, not the container's).

// MaxKeptFiles bounds the files the shim keeps.
const MaxKeptFiles = 8

// keptFiles are the descriptors the shim holds for the agent. They are kept as numbers, never as
// *os.File: File.Fd would make the shared sockets blocking under the agent's resolver.
type keptFiles struct {
	mu  sync.Mutex
	fds []int
}

// replace keeps fds instead of those kept before (closed).
func (k *keptFiles) replace(fds []int) {
	k.mu.Lock()
	old := k.fds
	k.fds = fds
	k.mu.Unlock()
	for _, fd := range old {
		unix.Close(fd)
	}
}

// handleKeepFiles receives the files to keep (none: drop those kept) and answers one byte.
func (s *Shim) handleKeepFiles(w http.ResponseWriter, r *http.Request) {
	conn, _, err := hijack(w)
	if err != nil {
		return
	}
	defer conn.Close()
	fds, err := recvFds(conn)
	if err != nil {
		s.log.Warn("receive the files to keep", "err", err)
		return
	}
	s.kept.replace(fds)
	_, _ = conn.Write([]byte{0})
}

// handleTakeFiles sends copies of the kept files once the client has sent one byte (so that they do
// not arrive while its HTTP reader still buffers). The shim keeps them.
func (s *Shim) handleTakeFiles(w http.ResponseWriter, r *http.Request) {
	conn, rw, err := hijack(w)
	if err != nil {
		return
	}
	defer conn.Close()
	if _, err := rw.ReadByte(); err != nil {
		return
	}
	s.kept.mu.Lock()
	defer s.kept.mu.Unlock()
	if err := sendFds(conn, s.kept.fds); err != nil {
		s.log.Warn("send the kept files", "err", err)
	}
}

// sendFds writes one byte carrying fds (SCM_RIGHTS) on conn, a unix socket.
func sendFds(conn net.Conn, fds []int) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return errors.New("not a unix socket")
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err := uc.WriteMsgUnix([]byte{byte(len(fds))}, oob, nil)
	return err
}

// recvFds reads the byte sendFds writes and returns the descriptors it carries (the caller's).
func recvFds(conn net.Conn) ([]int, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, errors.New("not a unix socket")
	}
	b := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(MaxKeptFiles*4))
	n, oobn, flags, _, err := uc.ReadMsgUnix(b, oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err == nil {
		for _, m := range msgs {
			got, perr := unix.ParseUnixRights(&m)
			if perr != nil {
				err = perr
			}
			fds = append(fds, got...)
		}
	}
	switch {
	case err != nil:
	case n != 1 || int(b[0]) != len(fds):
		err = fmt.Errorf("%d files received, %d announced", len(fds), b[0])
	case flags&unix.MSG_CTRUNC != 0:
		err = fmt.Errorf("more than %d files sent", MaxKeptFiles)
	}
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, err
	}
	return fds, nil
}

// withFds calls fn with the descriptors of files, without File.Fd (which would make them blocking).
func withFds(files []*os.File, fn func(fds []int) error) error {
	if len(files) == 0 {
		return fn(nil)
	}
	rc, err := files[0].SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		ferr = withFds(files[1:], func(rest []int) error { return fn(append([]int{int(fd)}, rest...)) })
	})
	if err != nil {
		return err
	}
	return ferr
}

// KeepFiles gives the shim files to keep for the agent (copies: the caller still closes its own),
// instead of those it kept; none drops them. A shim older than this API answers ErrNotFound.
func (c *Client) KeepFiles(ctx context.Context, files []*os.File) error {
	if len(files) > MaxKeptFiles {
		return fmt.Errorf("keep %d files: the shim keeps at most %d", len(files), MaxKeptFiles)
	}
	conn, br, err := c.hj.Upgrade(ctx, "/files/keep", nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	stopOnDone(ctx, conn)
	if err := withFds(files, func(fds []int) error { return sendFds(conn, fds) }); err != nil {
		return fmt.Errorf("give the shim files to keep: %w", err)
	}
	if _, err := br.ReadByte(); err != nil {
		return fmt.Errorf("give the shim files to keep: no answer: %w", err)
	}
	return nil
}

// TakeFiles returns copies of the files the shim keeps (it keeps them too); none when it keeps none.
func (c *Client) TakeFiles(ctx context.Context) ([]*os.File, error) {
	conn, _, err := c.hj.Upgrade(ctx, "/files/take", nil)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stopOnDone(ctx, conn)
	if _, err := conn.Write([]byte{0}); err != nil {
		return nil, err
	}
	fds, err := recvFds(conn)
	if err != nil {
		return nil, fmt.Errorf("take the files the shim keeps: %w", err)
	}
	var files []*os.File
	for _, fd := range fds {
		files = append(files, os.NewFile(uintptr(fd), "kept"))
	}
	return files, nil
}

// stopOnDone makes conn's reads and writes fail when ctx ends.
func stopOnDone(ctx context.Context, conn net.Conn) {
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
}
