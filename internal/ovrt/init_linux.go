package ovrt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/ovrt/rootdir"
	"github.com/ovnet/ov/internal/ovrt/seccomp"
	"github.com/ovnet/ov/internal/ovrt/spec"
)

// Init runs the container helper when the runtime started this program as one (a container's init,
// or a process being exec'd into a container); it then never returns. Otherwise it returns at once.
// Every program that creates containers with this package (ovrt, tests) must call it first thing in
// main (or TestMain).
func Init() {
	mode := os.Getenv(envMode)
	if mode == "" {
		return
	}
	// Capabilities and seccomp are per thread: everything below runs on this one, which execs.
	goruntime.LockOSThread()
	os.Unsetenv(envMode)
	sync := os.NewFile(fdSync, "ovrt-sync")
	err := runHelper(mode, sync)
	// Only failures come back here.
	code := 1
	if errors.Is(err, errStarted) {
		// After Start nobody listens on the sync socket: tell the container's stderr, and exit like a
		// shell that cannot run a program.
		fmt.Fprintf(os.Stderr, "ovrt: %v\n", err)
		code = 126
		if errors.Is(err, os.ErrNotExist) {
			code = 127
		}
	} else {
		_ = json.NewEncoder(sync).Encode(syncMsg{Error: err.Error()})
	}
	os.Exit(code)
}

// errStarted marks failures after the init reported ready.
var errStarted = errors.New("container process failed to start")

func runHelper(mode string, sync *os.File) error {
	// Nothing the runtime passed may leak into the container process.
	for _, fd := range []int{fdSync, fdExe} {
		unix.CloseOnExec(fd)
	}
	var cfg initConfig
	if err := json.NewDecoder(sync).Decode(&cfg); err != nil {
		return fmt.Errorf("read config from runtime: %w", err)
	}
	for _, fd := range []int{cfg.FifoFD, cfg.ConsoleFD} {
		if fd > 0 {
			unix.CloseOnExec(fd)
		}
	}
	if cfg.Process == nil || cfg.Spec == nil || cfg.Spec.Linux == nil {
		return errors.New("incomplete config from runtime")
	}
	newNS := map[string]bool{}
	for _, n := range cfg.NewNS {
		newNS[n] = true
	}
	s, p := cfg.Spec, cfg.Process
	if mode == "create" && newNS[string(specs.CgroupNamespace)] {
		// The runtime put us in the container's cgroup before sending the config: a cgroup
		// namespace made now is rooted there. It belongs to this thread, which mounts the cgroup
		// filesystem below and execs the container's process.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("create cgroup namespace: %w", err)
		}
	}
	if mode == "create" {
		if err := setupRootfs(s, cfg.Rootfs, cfg.CgroupPath, newNS); err != nil {
			return err
		}
		if newNS[string(specs.UTSNamespace)] {
			if s.Hostname != "" {
				if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
					return fmt.Errorf("set hostname %q: %w", s.Hostname, err)
				}
			}
			if s.Domainname != "" {
				if err := unix.Setdomainname([]byte(s.Domainname)); err != nil {
					return fmt.Errorf("set domainname %q: %w", s.Domainname, err)
				}
			}
		}
		if err := finishRootfs(s); err != nil {
			return err
		}
	}
	if cfg.ConsoleFD > 0 {
		if err := setupConsole(cfg.ConsoleFD); err != nil {
			return err
		}
	}
	for _, r := range p.Rlimits {
		if err := setRlimit(r); err != nil {
			return err
		}
	}
	if p.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*p.OOMScoreAdj)), 0); err != nil {
			return fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	env := withHome(p.Env, p.User.UID)
	exe, err := lookPath(p.Args[0], env)
	if err != nil {
		return err
	}
	c, err := resolveCaps(p.Capabilities)
	if err != nil {
		return err
	}
	filter := cfg.Seccomp
	if mode == "create" {
		// Report ready, then block until Start opens the fifo for reading.
		if err := json.NewEncoder(sync).Encode(syncMsg{Ready: true}); err != nil {
			return err
		}
		sync.Close()
		fifo, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(cfg.FifoFD), os.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%w: open exec fifo: %v", errStarted, err)
		}
		if _, err := fifo.Write([]byte("0")); err != nil {
			return fmt.Errorf("%w: write exec fifo: %v", errStarted, err)
		}
		fifo.Close()
		unix.Close(cfg.FifoFD)
		if err := finalize(p, c, filter, exe, env); err != nil {
			return fmt.Errorf("%w: %w", errStarted, err)
		}
		return nil
	}
	return finalize(p, c, filter, exe, env)
}

// finalize switches to the process's user, capabilities and security settings and executes it, in
// the order that keeps each step possible: default signal actions and an empty mask, bounding set (needs CAP_SETPCAP), user and groups with
// PR_SET_KEEPCAPS (so setuid does not clear the permitted set), working directory (checked as that
// user), the five capability sets, no_new_privs, and seccomp last, right before execve (first when
// no_new_privs is off, since loading then needs CAP_SYS_ADMIN).
func finalize(p *specs.Process, c caps, filter *seccomp.Program, exe string, env []string) error {
	last := lastCap()
	if err := resetSignals(); err != nil {
		return err
	}
	// Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the process may be about to
	// lose: load it now (the profile must then allow the few calls below, as Docker's does).
	if filter != nil && !p.NoNewPrivileges {
		if err := filter.Load(); err != nil {
			return err
		}
		filter = nil
	}
	if p.Capabilities != nil {
		if err := dropBounding(c.bounding, last); err != nil {
			return err
		}
	}
	if p.Cwd != "" {
		// A missing working directory is made (mode 0755, owned by root), as Docker makes the one
		// -w or WORKDIR names. This runs inside the container's root, so a symlink in the path
		// resolves within it; where it cannot be made (a read-only rootfs), Chdir below says so.
		_ = os.MkdirAll(p.Cwd, 0o755)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set keepcaps: %w", err)
	}
	if err := setUser(p.User); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keepcaps: %w", err)
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("process.cwd %s: %w", cwd, err)
	}
	if p.User.Umask != nil {
		unix.Umask(int(*p.User.Umask))
	}
	if p.Capabilities != nil {
		if err := applyCaps(c, last); err != nil {
			return err
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if filter != nil {
		if err := filter.Load(); err != nil {
			return err
		}
	}
	if err := unix.Exec(exe, p.Args, env); err != nil {
		return fmt.Errorf("exec %s: %w", exe, err)
	}
	return nil
}

func setUser(u specs.User) error {
	groups := make([]int, len(u.AdditionalGids))
	for i, g := range u.AdditionalGids {
		groups[i] = int(g)
	}
	// setgroups is refused in a user namespace whose setgroups file says deny (one made by an
	// unprivileged user, which a container may join): there, as runc does, the groups are left as
	// they are. Elsewhere a refusal is an error, but for an empty list.
	if setgroupsAllowed() {
		if err := syscall.Setgroups(groups); err != nil && !(len(groups) == 0 && err == syscall.EPERM) {
			return fmt.Errorf("set groups %v: %w", u.AdditionalGids, err)
		}
	}
	if err := syscall.Setgid(int(u.GID)); err != nil {
		return fmt.Errorf("set gid %d: %w", u.GID, err)
	}
	if err := syscall.Setuid(int(u.UID)); err != nil {
		return fmt.Errorf("set uid %d: %w", u.UID, err)
	}
	return nil
}

// setgroupsAllowed tells whether this process's user namespace allows setgroups
// (/proc/self/setgroups is not "deny"; the file is missing before Linux 3.19: allowed).
func setgroupsAllowed() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err != nil || strings.TrimSpace(string(b)) != "deny"
}

// withHome adds HOME from /etc/passwd (or "/") when the environment lacks it, as runc does. The
// file is the image's: it is read only if it is a regular file, at most spec.MaxUserFile bytes, so
// a FIFO or a huge file there cannot hang or exhaust the container's start.
func withHome(env []string, uid uint32) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			return env
		}
	}
	home := "/"
	if b, err := readRootFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(line, ":")
			if len(f) >= 6 && f[2] == strconv.Itoa(int(uid)) && f[5] != "" {
				home = f[5]
				break
			}
		}
	}
	return append(append([]string(nil), env...), "HOME="+home)
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath finds the program in the container's filesystem with the PATH of its environment.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", err
		}
		return name, nil
	}
	path := defaultPath
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			path = e[5:]
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: executable file not found in $PATH (%s): %w", name, path, os.ErrNotExist)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("exec %q: %w", p, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("exec %q: not an executable file: %w", p, os.ErrPermission)
	}
	return nil
}

// setRlimit sets one limit. When the runtime may not raise a hard limit (no CAP_SYS_RESOURCE, as in
// some nested or restricted hosts), it clamps the request to the current hard limit rather than
// failing the container: the process gets as much as the host allows.
func setRlimit(r specs.POSIXRlimit) error {
	res := rlimits[r.Type]
	lim := syscall.Rlimit{Cur: r.Soft, Max: r.Hard}
	err := syscall.Setrlimit(res, &lim)
	if err == syscall.EPERM {
		var cur syscall.Rlimit
		if syscall.Getrlimit(res, &cur) == nil && lim.Max > cur.Max {
			lim.Max = cur.Max
			lim.Cur = min(lim.Cur, cur.Max)
			err = syscall.Setrlimit(res, &lim)
		}
	}
	if err != nil {
		return fmt.Errorf("process.rlimits: set %s to %d/%d: %w", r.Type, r.Soft, r.Hard, err)
	}
	return nil
}

// readRootFile reads a file of the container's root (after pivot_root) the safe way.
func readRootFile(p string) ([]byte, error) {
	root, err := rootdir.Open("/")
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.ReadFile(p, spec.MaxUserFile)
}
