package seccomp

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ovnet/ov/internal/ovrt/spec"
)

// TestCacheReturnsTheCompiledProgram: the cache gives the same program as compiling, stores it once
// per profile, uses what it stored, and recompiles (and repairs) a damaged entry.
func TestCacheReturnsTheCompiledProgram(t *testing.T) {
	s, err := spec.Default(spec.Options{ID: "c", Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := CompileProgram(s.Linux.Seccomp)
	if err != nil {
		t.Fatal(err)
	}
	c := Cache{Dir: filepath.Join(t.TempDir(), "seccomp")}
	for i := 0; i < 2; i++ {
		got, err := c.Program(s.Linux.Seccomp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.BPF, want.BPF) || got.Flags != want.Flags {
			t.Fatalf("call %d: cached program differs from the compiled one", i)
		}
	}
	files, _ := filepath.Glob(filepath.Join(c.Dir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("cache holds %v; want one entry for one profile", files)
	}
	// An entry the cache reads is what it loads: prove it is used, then that a damaged one is redone.
	marked := append([]byte(nil), want.BPF...)
	marked[0] ^= 0xff
	if err := c.store(files[0], &Program{BPF: marked, Flags: want.Flags}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Program(s.Linux.Seccomp); !bytes.Equal(got.BPF, marked) {
		t.Errorf("the cache did not use its stored entry")
	}
	if err := os.WriteFile(files[0], []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := c.Program(s.Linux.Seccomp)
	if err != nil || !bytes.Equal(got.BPF, want.BPF) {
		t.Errorf("damaged entry: got %d bytes, %v; want the compiled program", len(got.BPF), err)
	}
	// Another profile is another entry.
	s.Linux.Seccomp.Syscalls = s.Linux.Seccomp.Syscalls[1:]
	if _, err := c.Program(s.Linux.Seccomp); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(c.Dir, "*.json")); len(files) != 2 {
		t.Errorf("cache holds %d entries after a second profile; want 2", len(files))
	}
}
