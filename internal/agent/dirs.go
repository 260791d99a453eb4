package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// MakeDirs creates the agent's state directories, root's alone (0700), and tightens those an older
// version left open (0711, 0755), before anything is written under them: Root, Root/containers and
// each container's directory there (records, logs), RunDir, its containers/ and each bundle there,
// shims/ and runtime/ (the OCI runtime's --root; what the runtime makes inside keeps its own modes).
// The one exception is RunDir with a SocketGID: 0710 with that group, so members can reach the
// socket (and nothing else: every directory below is 0700). cmd/ovagent calls it first of all; New
// calls it again. Nothing of a container is meant to be reached through these paths: the runtime
// enters the container's rootfs as root and only then drops to the container's user.
func (c Config) MakeDirs() error {
	runMode, runGID := os.FileMode(0o700), 0
	if c.SocketGID > 0 {
		runMode, runGID = 0o710, c.SocketGID
	}
	if err := ensureDir(c.Root, 0o700, 0); err != nil {
		return err
	}
	if err := ensureDir(c.RunDir, runMode, runGID); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(c.RunDir, "shims"), filepath.Join(c.RunDir, "runtime")} {
		if err := ensureDir(d, 0o700, 0); err != nil {
			return err
		}
	}
	// Each container's directories too; what is inside runtime/ is the OCI runtime's (its own modes).
	for _, d := range []string{filepath.Join(c.Root, "containers"), filepath.Join(c.RunDir, "containers")} {
		if err := ensureDir(d, 0o700, 0); err != nil {
			return err
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("agent: state directory: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() {
				if err := ensureDir(filepath.Join(d, e.Name()), 0o700, 0); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ensureDir creates dir (and missing parents, 0700) and gives it mode and group gid, whatever it had.
func ensureDir(dir string, mode os.FileMode, gid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent: create state directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("agent: state directory: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != 0 || int(st.Gid) != gid) {
		if err := os.Chown(dir, 0, gid); err != nil {
			return fmt.Errorf("agent: state directory %s: give it to root (group %d): %w", dir, gid, err)
		}
	}
	if fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != mode {
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("agent: tighten state directory %s to %o: %w", dir, mode, err)
		}
	}
	return nil
}
