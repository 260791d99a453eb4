package agent

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPty returns a new pseudo-terminal pair.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// screen collects what a terminal shows.
type screen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor waits until the screen shows want (after offset from).
func (s *screen) waitFor(t *testing.T, from int, want string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if i := strings.Index(s.String()[from:], want); i >= 0 {
			return from + i + len(want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the terminal never showed %q; it shows:\n%s", want, s.String())
	return 0
}

// TestInteractiveTerminal drives `ovctl run -it` from a real terminal: the container sees the
// terminal's size, Ctrl-C interrupts the container's foreground process (not ovctl), and ovctl exits
// with the shell's exit code, with ovrt and with runc.
func TestInteractiveTerminal(t *testing.T) {
	for _, tc := range []struct {
		name string
		rt   string
	}{
		{"runc", "/usr/sbin/runc"},
		{"default runtime", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := tc.rt
			if rt == "" {
				rt = testRuntime()
			}
			interactive(t, newLabRuntime(t, rt))
		})
	}
}

func interactive(t *testing.T, l *lab) {
	master, slave := openPty(t)
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 101}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(l.ctlBin, "--socket", l.sock, "run", "-it", "--rm", "--network", "none", "busybox", "sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var scr screen
	go func() { _, _ = ioCopy(&scr, master) }()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		err := cmd.Wait()
		done <- result{cmd.ProcessState.ExitCode(), err}
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()
	send := func(s string) {
		if _, err := master.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	off := scr.waitFor(t, 0, "# ")
	send("stty size\r")
	off = scr.waitFor(t, off, "33 101")
	send("sleep 60\r")
	off = scr.waitFor(t, off, "sleep 60")
	time.Sleep(300 * time.Millisecond)
	send("\x03") // Ctrl-C: SIGINT to the container's foreground process group
	off = scr.waitFor(t, off, "^C")
	send("echo status=$?\r")
	scr.waitFor(t, off, "status=130")
	send("exit 7\r")
	select {
	case r := <-done:
		if r.code != 7 {
			t.Errorf("ovctl exited %d (%v), want the shell's 7; screen:\n%s", r.code, r.err, scr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("ovctl did not exit after the shell did; screen:\n%s", scr.String())
	}
}

func ioCopy(dst *screen, src *os.File) (int64, error) {
	buf := make([]byte, 4096)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			dst.Write(buf[:k])
			n += int64(k)
		}
		if err != nil {
			return n, err
		}
	}
}
