package seccomp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"

	"github.com/ovnet/ov/internal/atomicfile"
)

// Cache keeps compiled programs in a directory, one file per profile, so that a runtime that starts
// many containers with the same profile (an engine's default) compiles it once: compiling Docker's
// default profile with libseccomp takes about 20 ms of CPU per container, reading it back well under
// one. The key covers the profile, the libseccomp version and the machine's architecture. The
// directory must be private to the runtime (its state root): a program read from it is loaded into
// containers as it is.
type Cache struct {
	Dir string
}

// Program returns the compiled program of p, from the cache when it holds it, else compiled with
// CompileProgram and stored (best effort: a cache that cannot be written only costs the time).
func (c Cache) Program(p *specs.LinuxSeccomp) (*Program, error) {
	if p == nil || c.Dir == "" {
		return CompileProgram(p)
	}
	key, err := cacheKey(p)
	if err != nil {
		return CompileProgram(p)
	}
	path := filepath.Join(c.Dir, key+".json")
	if b, err := os.ReadFile(path); err == nil {
		var prog Program
		if json.Unmarshal(b, &prog) == nil && len(prog.BPF) > 0 && len(prog.BPF)%8 == 0 {
			return &prog, nil
		}
	}
	prog, err := CompileProgram(p)
	if err != nil {
		return nil, err
	}
	_ = c.store(path, prog)
	return prog, nil
}

func cacheKey(p *specs.LinuxSeccomp) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	major, minor, micro := libseccomp.GetLibraryVersion()
	h := sha256.New()
	fmt.Fprintf(h, "libseccomp %d.%d.%d %s\n", major, minor, micro, goruntime.GOARCH)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// store writes the program atomically (a temporary file renamed into place), so a concurrent reader
// sees either nothing or all of it. There is no fsync: a program lost in a crash is compiled again.
func (c Cache) store(path string, prog *Program) error {
	b, err := json.Marshal(prog)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}
