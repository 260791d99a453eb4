package seccomp

import (
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ovrt/spec"
)

func TestCompileDockerDefault(t *testing.T) {
	s, err := spec.Default(spec.Options{ID: "c", Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := Compile(s.Linux.Seccomp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	prog, err := f.Program()
	if err != nil {
		t.Fatal(err)
	}
	bpf := prog.BPF
	// struct sock_filter is 8 bytes; Docker's profile compiles to hundreds of instructions.
	if len(bpf)%8 != 0 || len(bpf)/8 < 100 {
		t.Errorf("BPF program of %d bytes, want hundreds of 8-byte instructions", len(bpf))
	}
}

func TestCompileRejectsBadProfiles(t *testing.T) {
	errno := uint(1)
	for _, tt := range []struct {
		name string
		p    *specs.LinuxSeccomp
		says string
	}{
		{"nil", nil, "no profile"},
		{"unknown default action", &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_BOGUS"}, `unknown action "SCMP_ACT_BOGUS"`},
		{"unknown architecture", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{"SCMP_ARCH_VAX"}}, "SCMP_ARCH_VAX"},
		{"unknown operator", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{
			Names: []string{"keyctl"}, Action: specs.ActErrno, ErrnoRet: &errno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_BOGUS"}},
		}}}, `unknown operator "SCMP_CMP_BOGUS"`},
		{"notify", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"keyctl"}, Action: specs.ActNotify}}}, "not supported"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.p)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("Compile: %v, want ErrInvalidArgument saying %q", err, tt.says)
			}
		})
	}
}
