// Package atomicfile replaces files so that a reader sees either the old content or the new, never a
// part: the data goes to a temporary file in the same directory, which is then renamed over the target.
// WriteSync also makes the replacement durable: the file is flushed before the rename and its directory
// after it, so that after a crash of the machine the target holds the old content or the new, whole.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data (mode perm), creating its directory (0700) if needed. It survives a
// crash of the writing process; use WriteSync for state that must also survive a crash of the machine.
// Write is for files on tmpfs, caches and files written on hot paths whose loss a restart repairs.
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, options{})
}

// WriteSync is Write with the data flushed to disk before the rename and the directory (which holds
// the rename) flushed after it.
func WriteSync(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, options{sync: true, syncDir: syncDir})
}

type options struct {
	sync    bool
	syncDir func(dir string) error // called after the rename when sync is set
}

func write(path string, data []byte, perm os.FileMode, o options) error {
	dir := filepath.Dir(path)
	var created []string
	if o.sync {
		created = missingDirs(dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil && o.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if !o.sync {
		return nil
	}
	if err := o.syncDir(dir); err != nil {
		return err
	}
	// The directories made above exist after a crash only once their parents are flushed too.
	for _, d := range created {
		if err := o.syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// missingDirs lists dir and those of its parents that do not exist, deepest first.
func missingDirs(dir string) []string {
	var out []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) || d == filepath.Dir(d) {
			return out
		}
		out = append(out, d)
	}
}

// SyncDir flushes the directory dir, and with it the names renamed into it or removed from it: call
// it after renaming or removing a file that must stay so after a crash of the machine.
func SyncDir(dir string) error { return syncDir(dir) }

// syncDir flushes the directory dir, and with it the names renamed into it.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
