package dns

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/testutil"
)

// takeFiles takes copies of the descriptors fds of process pid (pidfd_getfd), as the next agent
// takes the sockets back from a container's shim.
func takeFiles(t *testing.T, pid int, fds []int) []*os.File {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(pidfd)
	var files []*os.File
	for _, fd := range fds {
		nfd, err := unix.PidfdGetfd(pidfd, fd, 0)
		if err != nil {
			t.Fatalf("pidfd_getfd %d of %d: %v", fd, pid, err)
		}
		files = append(files, os.NewFile(uintptr(nfd), "kept"))
	}
	t.Cleanup(func() { closeFiles(files) })
	return files
}

// startKeeper starts `sleep 60` holding files at descriptors 3 and up. It passes raw descriptors
// (syscall.StartProcess), as exec.Cmd.ExtraFiles would call File.Fd, which makes the sockets
// blocking under the running server.
func startKeeper(t *testing.T, sleep string, files []*os.File) int {
	t.Helper()
	fds := []uintptr{0, 1, 2}
	for _, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		_ = rc.Control(func(fd uintptr) { fds = append(fds, fd) })
	}
	// The descriptors stay open in files while the child starts.
	pid, err := syscall.ForkExec(sleep, []string{"sleep", "60"}, &syscall.ProcAttr{Files: fds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	})
	return pid
}

// TestAdoptKeptSockets: a server's sockets, kept by another process while no server runs (the agent
// died, the shim holds them), queue the queries sent meanwhile (UDP and TCP: nothing refused, nothing
// lost); a new server adopts them and answers those queries, and new ones.
func TestAdoptKeptSockets(t *testing.T) {
	testutil.RequireRoot(t)
	sleep := testutil.RequireBinary(t, "sleep", "coreutils")
	ns := testutil.Netns(t, "dnskeep")
	path := "/run/netns/" + ns
	c := Client{Container: idCli, Netns: path, Networks: []string{"front"}}
	s1 := NewServer(testTable(), Config{})
	if err := s1.Add(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	files, err := s1.Files(idCli)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != udpSockets+1 {
		t.Fatalf("Files gave %d files, want %d", len(files), udpSockets+1)
	}
	pid := startKeeper(t, sleep, files) // fds 3, 4, 5 in the keeper
	closeFiles(files)
	s1.Close() // the agent dies

	type answer struct {
		r   *mdns.Msg
		err error
	}
	waiting := map[string]chan answer{}
	for _, network := range []string{"udp", "tcp"} {
		ch := make(chan answer, 1)
		waiting[network] = ch
		go func() {
			r, err := queryIn(path, network, "web", mdns.TypeA, 10*time.Second)
			ch <- answer{r, err}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	for network, ch := range waiting {
		select {
		case a := <-ch:
			t.Fatalf("%s: a query answered while no server runs: %v %v", network, a.err, a.r)
		default:
		}
	}

	s2 := NewServer(testTable(), Config{})
	defer s2.Close()
	kept := takeFiles(t, pid, []int{3, 4, 5})
	if err := s2.Adopt(context.Background(), c, kept); err != nil {
		t.Fatal(err)
	}
	for network, ch := range waiting {
		a := <-ch
		if a.err != nil || !slices.Equal(addrsOf(a.r), []string{"10.1.0.2"}) {
			t.Errorf("%s: the query sent while no server ran: %v %v, want [10.1.0.2]", network, a.err, a.r)
		}
		r, err := queryIn(path, network, "web", mdns.TypeA, 2*time.Second)
		if err != nil || !slices.Equal(addrsOf(r), []string{"10.1.0.2"}) {
			t.Errorf("%s: a new query after Adopt: %v %v, want [10.1.0.2]", network, err, r)
		}
	}
}

// TestAdoptChecks: Adopt serves only the resolver's own sockets of the container's namespace.
func TestAdoptChecks(t *testing.T) {
	testutil.RequireRoot(t)
	ns1, ns2 := testutil.Netns(t, "dnsad1"), testutil.Netns(t, "dnsad2")
	c1 := Client{Container: idCli, Netns: "/run/netns/" + ns1}
	c2 := Client{Container: idWeb, Netns: "/run/netns/" + ns2}
	s1 := NewServer(testTable(), Config{})
	defer s1.Close()
	if err := s1.Add(context.Background(), c2); err != nil {
		t.Fatal(err)
	}
	other, err := s1.Files(idWeb) // the resolver's sockets, of another namespace
	if err != nil {
		t.Fatal(err)
	}
	defer closeFiles(other)
	if err := s1.Add(context.Background(), c1); err != nil {
		t.Fatal(err)
	}
	good, err := s1.Files(idCli)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFiles(good)
	wrongPort, err := openSockets(c1.Netns, netip.MustParseAddrPort(Address+":5353"))
	if err != nil {
		t.Fatal(err)
	}
	defer wrongPort.close()
	wp, _ := wrongPort.udp[0].File()
	wl, _ := wrongPort.tcp.File()
	defer closeFiles([]*os.File{wp, wl})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer closeFiles([]*os.File{r, w})
	for _, tc := range []struct {
		name  string
		files []*os.File
		want  string
	}{
		{"another namespace", other, "another network namespace"},
		{"another port", []*os.File{wp, wl}, "want 127.0.0.11:53"},
		{"not a socket", []*os.File{r, other[2]}, "not a socket"},
		{"no listener", good[:2], "want both"},
		{"two listeners", []*os.File{good[0], good[2], good[2]}, "a second TCP listener"},
		{"nothing", nil, "0 files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(testTable(), Config{})
			defer s.Close()
			err := s.Adopt(context.Background(), c1, tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Adopt: %v, want an error with %q", err, tc.want)
			}
			if s.lookupServed(c1.Container) != nil {
				t.Errorf("a failed Adopt left a registration")
			}
		})
	}
}
