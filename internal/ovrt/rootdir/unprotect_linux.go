//go:build !ovrt_unprotect

package rootdir

import "os"

// Unprotected reports whether the protection named name is turned off. It is always false outside
// the ovrt_unprotect test build, so the compiler drops every unprotected branch.
func Unprotected(name string) bool { return false }

// UnprotectEnv is the environment a helper process needs to see the same switches: none here.
func UnprotectEnv() []string { return nil }

// The path-string implementations exist only in the ovrt_unprotect build.

func (d *Dir) unsafeOpen(string) (*os.File, error)             { panic("unreachable") }
func (d *Dir) unsafeMkdirAll(string, uint32) (*os.File, error) { panic("unreachable") }
func (d *Dir) unsafeMkFile(string, uint32) (*os.File, error)   { panic("unreachable") }
func (d *Dir) unsafeReadFile(string, int64) ([]byte, error)    { panic("unreachable") }
func (d *Dir) unsafeAt(string, func(int, string) error) error  { panic("unreachable") }
