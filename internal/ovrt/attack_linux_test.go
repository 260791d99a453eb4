package ovrt

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/ovrt/spec"
	"github.com/ovnet/ov/internal/testutil"
)

// The attack tests act as a hostile image (or a process racing the runtime) and check that nothing
// outside the container's rootfs changes. Each fails in the ovrt_unprotect test build with the
// protection it attacks turned off (see docs/security-runtime.md), e.g.
//
//	OVRT_UNPROTECT=resolve go test -tags ovrt_unprotect -run TestAttack ./internal/ovrt/

// hostTree lists everything under dir: names, types, owners, and the content of files and links.
func hostTree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %s %d:%d", strings.TrimPrefix(p, dir), fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			line += " -> " + l
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// victimDir is a host directory an attacker aims at: world-writable (so that even a container's
// mapped root could write there if it were reached), holding files named like /dev entries.
func victimDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "victim")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ptmx", "null", "keep"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("host file "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// escapes are symlinks (name in the rootfs -> target) that lead from the rootfs to target on the host:
// an absolute link, a relative one with too many "..", and a chain of links.
func escapes(how, name, target string) map[string]string {
	switch how {
	case "absolute":
		return map[string]string{name: target}
	case "relative":
		return map[string]string{name: strings.Repeat("../", 16) + strings.TrimPrefix(target, "/")}
	default: // chain
		return map[string]string{name: "hop1", "hop1": "./hop2", "hop2": "hop3", "hop3": strings.Repeat("../", 16) + strings.TrimPrefix(target, "/")}
	}
}

func plant(t *testing.T, rootfs string, links map[string]string) {
	t.Helper()
	for name, target := range links {
		p := filepath.Join(rootfs, name)
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
}

// userNS puts the container in a user namespace (container root = host uid 200000) and gives the
// rootfs to that user, as a user-namespaced image would be.
func userNS(t *testing.T, dir string) func(*specs.Spec) {
	t.Helper()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
		delete(s.Linux.Sysctl, "net.ipv4.ping_group_range")
	}
}

func chownTree(t *testing.T, dir string, id int) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, id, id)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// attackBundle writes a bundle whose busybox rootfs is changed by plantFn, with Docker's default
// spec for args, edited by edit; userns puts it in a user namespace.
func attackBundle(t *testing.T, id string, args []string, userns bool, plantFn func(rootfs string), edit func(*specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	testutil.BusyboxRootfs(t, rootfs)
	plantFn(rootfs)
	s, err := spec.Default(spec.Options{ID: id, Args: args})
	if err != nil {
		t.Fatal(err)
	}
	if userns {
		userNS(t, dir)(s)
		chownTree(t, rootfs, 200000)
	}
	if edit != nil {
		edit(s)
	}
	writeSpec(t, dir, s)
	return dir
}

// TestAttackImageDevSymlink: an image whose /dev is a symlink out of the rootfs (absolute, relative,
// a chain) gets its /dev inside the rootfs; the host directory it points at is not touched (the
// runtime used to remove and create /dev/ptmx, /dev/fd... there).
func TestAttackImageDevSymlink(t *testing.T) {
	rt := newRuntime(t)
	for _, how := range []string{"absolute", "relative", "chain"} {
		for _, userns := range []bool{false, true} {
			name := how
			if userns {
				name += "/userns"
			}
			t.Run(name, func(t *testing.T) {
				victim := victimDir(t)
				before := hostTree(t, victim)
				id := testutil.UniqueName("devlink")
				dir := attackBundle(t, id, []string{"sh", "-c", "test -c /dev/null && test -L /dev/fd && echo dev=ok"}, userns,
					func(rootfs string) { plant(t, rootfs, escapes(how, "dev", victim)) }, nil)
				out, errOut, st := run(t, rt, id, dir)
				if after := hostTree(t, victim); after != before {
					t.Errorf("the host directory the image's /dev points at changed:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				if st.Code != 0 || !strings.Contains(out, "dev=ok") {
					t.Errorf("container: exit %d, stdout %q, stderr %q; want its /dev complete inside the rootfs", st.Code, out, errOut)
				}
			})
		}
	}
}

// TestAttackVolumeDestinationSymlink: an image whose volume destinations are symlinks out of the
// rootfs gets the volumes inside the rootfs; the host directories they point at are not touched.
func TestAttackVolumeDestinationSymlink(t *testing.T) {
	rt := newRuntime(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "data"), []byte("volume"), 0o644); err != nil {
		t.Fatal(err)
	}
	srcFile := filepath.Join(t.TempDir(), "cfg")
	if err := os.WriteFile(srcFile, []byte("config"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"absolute", "relative", "chain"} {
		t.Run(how, func(t *testing.T) {
			victim := victimDir(t)
			before := hostTree(t, victim)
			id := testutil.UniqueName("vollink")
			dir := attackBundle(t, id, []string{"sh", "-c", "cat /vol/sub/data /etc/app/cfg /vol/keep"}, false,
				func(rootfs string) {
					plant(t, rootfs, escapes(how, "vol", victim))
					plant(t, rootfs, map[string]string{"etc/app": victim})
				},
				func(s *specs.Spec) {
					s.Mounts = append(s.Mounts,
						specs.Mount{Destination: "/vol/sub", Type: "bind", Source: src, Options: []string{"rbind", "rprivate"}},
						specs.Mount{Destination: "/vol/keep", Type: "bind", Source: srcFile, Options: []string{"rbind", "ro"}},
						specs.Mount{Destination: "/etc/app/cfg", Type: "bind", Source: srcFile, Options: []string{"rbind", "ro"}},
						specs.Mount{Destination: "/vol/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid"}})
				})
			out, errOut, st := run(t, rt, id, dir)
			if after := hostTree(t, victim); after != before {
				t.Errorf("the host directory the image's volume destinations point at changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if st.Code != 0 || out != "volumeconfigconfig" {
				t.Errorf("container: exit %d, stdout %q, stderr %q; want the volumes mounted inside the rootfs", st.Code, out, errOut)
			}
		})
	}
}

// TestAttackMountDestinationRace: while containers are created, a racer swaps the mount
// destinations' parent between a directory and a symlink out of the rootfs (renameat2
// RENAME_EXCHANGE in a loop, as a process sharing the rootfs could). Creates may fail (the runtime
// sees the destination change), but no directory, file or mount ever lands outside the rootfs.
func TestAttackMountDestinationRace(t *testing.T) {
	rt := newRuntime(t)
	src := t.TempDir()
	srcFile := filepath.Join(t.TempDir(), "cfg")
	if err := os.WriteFile(srcFile, []byte("config"), 0o644); err != nil {
		t.Fatal(err)
	}
	victim := victimDir(t)
	before := hostTree(t, victim)
	id := testutil.UniqueName("race")
	dir := attackBundle(t, id, []string{"true"}, false,
		func(rootfs string) {
			if err := os.MkdirAll(filepath.Join(rootfs, "race"), 0o755); err != nil {
				t.Fatal(err)
			}
			plant(t, rootfs, map[string]string{"race.alt": victim})
		},
		func(s *specs.Spec) {
			s.Mounts = append(s.Mounts,
				specs.Mount{Destination: "/race/a/b", Type: "bind", Source: src, Options: []string{"rbind"}},
				specs.Mount{Destination: "/race/c/cfg", Type: "bind", Source: srcFile, Options: []string{"rbind"}},
				specs.Mount{Destination: "/race/d", Type: "tmpfs", Source: "tmpfs"})
		})
	rootfs := filepath.Join(dir, "rootfs")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a, b := filepath.Join(rootfs, "race"), filepath.Join(rootfs, "race.alt")
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	const n = 60
	created := 0
	for i := range n {
		cid := fmt.Sprintf("%s-%d", id, i)
		c, err := rt.Create(cid, CreateOptions{Bundle: dir})
		if err == nil {
			created++
			if err := c.Delete(true); err != nil {
				t.Fatal(err)
			}
		}
		if after := hostTree(t, victim); after != before {
			t.Fatalf("create %d of %d (err %v) wrote outside the rootfs, in the host directory a swapped-in symlink points at:\nbefore:\n%s\nafter:\n%s", i+1, n, err, before, after)
		}
	}
	t.Logf("%d of %d creates succeeded while the destination was being swapped; nothing was written outside", created, n)
}

// TestAttackReadOnlyVolumeSubmount: `-v SRC:DST:ro` (an rbind with ro, as the agent makes it) of a
// host directory that has a mount inside it is read-only all the way down: writes into the
// submount fail with EROFS and nothing lands on the host.
func TestAttackReadOnlyVolumeSubmount(t *testing.T) {
	rt := newRuntime(t)
	for _, userns := range []bool{false, true} {
		name := "root"
		if userns {
			name = "userns"
		}
		t.Run(name, func(t *testing.T) {
			vol := t.TempDir()
			sub := filepath.Join(vol, "sub")
			if err := os.Mkdir(sub, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "mode=0777"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })
			if err := unix.Mount("", sub, "", unix.MS_PRIVATE, ""); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(vol, 0o777); err != nil {
				t.Fatal(err)
			}
			id := testutil.UniqueName("rovol")
			script := `touch /vol/sub/x 2>&1; echo sub=$?; touch /vol/y 2>&1; echo top=$?`
			dir := attackBundle(t, id, []string{"sh", "-c", script}, userns, func(string) {}, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rprivate", "ro"}})
			})
			out, errOut, st := run(t, rt, id, dir)
			f := facts(out)
			if st.Code != 0 || f["sub"] == "0" || f["top"] == "0" || strings.Count(out, "Read-only file system") != 2 {
				t.Errorf("container: exit %d, stdout %q, stderr %q; want both writes refused with EROFS", st.Code, out, errOut)
			}
			for _, p := range []string{filepath.Join(sub, "x"), filepath.Join(vol, "y")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written through a read-only volume", p)
				}
			}
		})
	}
}

// TestAttackPasswdFIFOAtStart: an image whose /etc/passwd is a FIFO does not hang the container's
// start (the init reads it for HOME): create returns in bounded time and the process gets HOME=/.
func TestAttackPasswdFIFOAtStart(t *testing.T) {
	rt := newRuntime(t)
	id := testutil.UniqueName("fifo")
	dir := attackBundle(t, id, []string{"sh", "-c", "echo home=$HOME"}, false, func(rootfs string) {
		p := filepath.Join(rootfs, "etc/passwd")
		os.Remove(p)
		if err := unix.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}, func(s *specs.Spec) { s.Process.User = specs.User{UID: 1000, GID: 1000} })
	var stdout bytes.Buffer
	type result struct {
		c   *Container
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := rt.Create(id, CreateOptions{Bundle: dir, Stdout: &stdout})
		done <- result{c, err}
	}()
	t.Cleanup(func() {
		if c, err := rt.Load(id); err == nil {
			_ = c.Delete(true)
		}
	})
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("create still blocked after 10s on the image's /etc/passwd FIFO")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	if st, err := r.c.Wait(); err != nil || st.Code != 0 {
		t.Fatalf("exit %+v %v", st, err)
	}
	if got := strings.TrimSpace(stdout.String()); got != "home=/" {
		t.Errorf("stdout %q, want home=/", got)
	}
}
