package shim

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// stdioPipes are the stdio of a process without a terminal: theirs go to the runtime (the process's
// stdin, stdout and stderr), the rest stay with the shim.
type stdioPipes struct {
	theirs         []*os.File // stdin's read end (or /dev/null), stdout's and stderr's write ends
	stdin          *os.File   // stdin's write end; nil when stdin is /dev/null
	stdout, stderr *os.File   // read ends of the output
}

// openPipes opens the pipes of a process; its stdin is a pipe when withStdin, else /dev/null.
func openPipes(withStdin bool) (*stdioPipes, error) {
	p := &stdioPipes{}
	var stdinR, outW, errW *os.File
	var err error
	if withStdin {
		stdinR, p.stdin, err = os.Pipe()
	} else {
		stdinR, err = os.Open(os.DevNull)
	}
	if err == nil {
		p.stdout, outW, err = os.Pipe()
	}
	if err == nil {
		p.stderr, errW, err = os.Pipe()
	}
	if err != nil {
		closeAll([]*os.File{stdinR, p.stdin, p.stdout, outW})
		return nil, err
	}
	p.theirs = []*os.File{stdinR, outW, errW}
	return p, nil
}

// closeAll closes every file of fs that is not nil.
func closeAll(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// runWithTerminal runs the runtime with args, a console socket at sock and the container's ID, and
// /dev/null for stdio; it returns the pty master the runtime sent.
func (s *Shim) runWithTerminal(sock string, args []string) (*os.File, error) {
	cs, err := newConsoleSocket(sock)
	if err != nil {
		return nil, err
	}
	defer cs.close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	type recv struct {
		f   *os.File
		err error
	}
	ch := make(chan recv, 1)
	go func() { f, err := cs.receive(); ch <- recv{f, err} }()
	args = append(args, "--console-socket", cs.path, s.cfg.ID)
	err = s.runtime([]*os.File{null, null, null}, nil, args...)
	if err != nil {
		cs.close() // the runtime will not connect: end the receive
	}
	r := <-ch
	if err != nil {
		closeAll([]*os.File{r.f})
		return nil, err
	}
	if r.err != nil {
		return nil, fmt.Errorf("receive the container's terminal: %w", r.err)
	}
	return r.f, nil
}

// readPidFile reads the pid a runtime wrote with --pid-file.
func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		return 0, fmt.Errorf("bad pid file %q", b)
	}
	return pid, nil
}

// waitDrained waits for wg, the copiers of a process's output, for at most drainTimeout, and reports
// whether they finished.
func waitDrained(wg *sync.WaitGroup) bool {
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-drained:
		return true
	case <-t.C:
		return false
	}
}
