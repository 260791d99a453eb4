package seccomp

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
)

// Filter is a compiled seccomp filter.
type Filter struct {
	f     *libseccomp.ScmpFilter
	flags uint // seccomp(2) flags the profile asks for
}

// Program is a filter in the kernel's format (an array of struct sock_filter) with the seccomp(2)
// flags to load it with. It is plain data: a runtime compiles it in one process and loads it in
// another, which then needs neither libseccomp nor the time to compile.
type Program struct {
	BPF   []byte `json:"bpf"`
	Flags uint   `json:"flags,omitempty"`
}

// Compile turns the profile p into a filter. A nil profile is an error: the caller decides whether a
// container runs without seccomp. Errors wrap errdefs.ErrInvalidArgument and name the offending field.
func Compile(p *specs.LinuxSeccomp) (*Filter, error) {
	if p == nil {
		return nil, fmt.Errorf("seccomp: no profile given: %w", errdefs.ErrInvalidArgument)
	}
	def, err := action(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("seccomp: defaultAction: %w", err)
	}
	f, err := libseccomp.NewFilter(def)
	if err != nil {
		return nil, fmt.Errorf("seccomp: new filter: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	// no_new_privs is the OCI process's own setting (process.noNewPrivileges), not libseccomp's.
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("seccomp: clear no_new_privs attribute: %w", err)
	}
	for _, a := range p.Architectures {
		// The spec names architectures SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64...; libseccomp-golang
		// takes x86_64, aarch64...
		arch, err := libseccomp.GetArchFromString(strings.TrimPrefix(string(a), "SCMP_ARCH_"))
		if err != nil {
			return nil, fmt.Errorf("seccomp: architecture %q: %v: %w", a, err, errdefs.ErrInvalidArgument)
		}
		if err := f.AddArch(arch); err != nil {
			return nil, fmt.Errorf("seccomp: add architecture %q: %w", a, err)
		}
	}
	var flags uint
	for _, fl := range p.Flags {
		switch fl {
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case specs.LinuxSeccompFlagWaitKillableRecv:
			// Only meaningful with a notification listener, which ovrt does not support.
		default:
			return nil, fmt.Errorf("seccomp: unknown flag %q: %w", fl, errdefs.ErrInvalidArgument)
		}
	}
	for i, sc := range p.Syscalls {
		act, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("seccomp: syscalls[%d] %v: %w", i, sc.Names, err)
		}
		if act == def {
			continue // libseccomp refuses rules that repeat the default action; they change nothing
		}
		conds, sameIndex, err := conditions(sc.Args)
		if err != nil {
			return nil, fmt.Errorf("seccomp: syscalls[%d] %v: %w", i, sc.Names, err)
		}
		for _, name := range sc.Names {
			call, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				continue // unknown to this libseccomp (newer kernel): skip, as runc does
			}
			if err := addRule(f, call, act, conds, sameIndex); err != nil {
				return nil, fmt.Errorf("seccomp: rule for %q: %w", name, err)
			}
		}
	}
	ok = true
	return &Filter{f: f, flags: flags}, nil
}

// addRule adds one syscall's rule. Conditions on different arguments are ANDed in one rule; several
// conditions on the same argument can only be expressed as one rule per condition (ORed), which is
// what profiles such as Docker's mean by them (personality, clone).
func addRule(f *libseccomp.ScmpFilter, call libseccomp.ScmpSyscall, act libseccomp.ScmpAction, conds []libseccomp.ScmpCondition, sameIndex bool) error {
	switch {
	case len(conds) == 0:
		return f.AddRule(call, act)
	case sameIndex:
		for _, c := range conds {
			if err := f.AddRuleConditional(call, act, []libseccomp.ScmpCondition{c}); err != nil {
				return err
			}
		}
		return nil
	default:
		return f.AddRuleConditional(call, act, conds)
	}
}

func conditions(args []specs.LinuxSeccompArg) ([]libseccomp.ScmpCondition, bool, error) {
	var conds []libseccomp.ScmpCondition
	seen := map[uint]bool{}
	sameIndex := false
	for _, a := range args {
		op, err := operator(a.Op)
		if err != nil {
			return nil, false, err
		}
		vals := []uint64{a.Value}
		if a.Op == specs.OpMaskedEqual {
			vals = append(vals, a.ValueTwo)
		}
		c, err := libseccomp.MakeCondition(a.Index, op, vals...)
		if err != nil {
			return nil, false, fmt.Errorf("argument %d: %v: %w", a.Index, err, errdefs.ErrInvalidArgument)
		}
		if seen[a.Index] {
			sameIndex = true
		}
		seen[a.Index] = true
		conds = append(conds, c)
	}
	return conds, sameIndex, nil
}

func operator(op specs.LinuxSeccompOperator) (libseccomp.ScmpCompareOp, error) {
	switch op {
	case specs.OpNotEqual:
		return libseccomp.CompareNotEqual, nil
	case specs.OpLessThan:
		return libseccomp.CompareLess, nil
	case specs.OpLessEqual:
		return libseccomp.CompareLessOrEqual, nil
	case specs.OpEqualTo:
		return libseccomp.CompareEqual, nil
	case specs.OpGreaterEqual:
		return libseccomp.CompareGreaterEqual, nil
	case specs.OpGreaterThan:
		return libseccomp.CompareGreater, nil
	case specs.OpMaskedEqual:
		return libseccomp.CompareMaskedEqual, nil
	}
	return libseccomp.CompareInvalid, fmt.Errorf("unknown operator %q: %w", op, errdefs.ErrInvalidArgument)
}

func action(a specs.LinuxSeccompAction, errnoRet *uint) (libseccomp.ScmpAction, error) {
	errno := uint(unix.EPERM)
	if errnoRet != nil {
		errno = *errnoRet
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return libseccomp.ActKillThread, nil
	case specs.ActKillProcess:
		return libseccomp.ActKillProcess, nil
	case specs.ActTrap:
		return libseccomp.ActTrap, nil
	case specs.ActErrno:
		return libseccomp.ActErrno.SetReturnCode(int16(errno)), nil
	case specs.ActTrace:
		return libseccomp.ActTrace.SetReturnCode(int16(errno)), nil
	case specs.ActAllow:
		return libseccomp.ActAllow, nil
	case specs.ActLog:
		return libseccomp.ActLog, nil
	case specs.ActNotify:
		return libseccomp.ActInvalid, fmt.Errorf("action %q is not supported by ovrt: %w", a, errdefs.ErrInvalidArgument)
	}
	return libseccomp.ActInvalid, fmt.Errorf("unknown action %q: %w", a, errdefs.ErrInvalidArgument)
}

// Program exports the filter in the kernel's format.
func (f *Filter) Program() (*Program, error) {
	// libseccomp before 2.6 exports only to a file descriptor.
	fd, err := unix.MemfdCreate("seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	m := os.NewFile(uintptr(fd), "seccomp-bpf")
	defer m.Close()
	if err := f.f.ExportBPF(m); err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	b, err := io.ReadAll(io.NewSectionReader(m, 0, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	return &Program{BPF: b, Flags: f.flags}, nil
}

// Release frees the filter's libseccomp memory.
func (f *Filter) Release() { f.f.Release() }

// CompileProgram is Compile followed by Program.
func CompileProgram(p *specs.LinuxSeccomp) (*Program, error) {
	f, err := Compile(p)
	if err != nil {
		return nil, err
	}
	defer f.Release()
	return f.Program()
}

// Load installs the program on the calling OS thread (never TSYNC); the caller must have locked the
// thread and must either hold CAP_SYS_ADMIN or have set no_new_privs. The filter is inherited across
// execve.
func (p *Program) Load() error {
	const insn = int(unsafe.Sizeof(unix.SockFilter{}))
	n := len(p.BPF) / insn
	if n == 0 || len(p.BPF)%insn != 0 || n > 0xffff {
		return fmt.Errorf("seccomp: program of %d bytes is not a BPF program: %w", len(p.BPF), errdefs.ErrInvalidArgument)
	}
	filters := make([]unix.SockFilter, n)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&filters[0])), len(p.BPF)), p.BPF)
	prog := unix.SockFprog{Len: uint16(n), Filter: &filters[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(p.Flags), uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filters)
	if errno != 0 {
		return fmt.Errorf("seccomp: load filter: %w", errno)
	}
	return nil
}
