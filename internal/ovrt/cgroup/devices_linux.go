package cgroup

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/errdefs"
)

// On cgroup v2 the device rules are an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached
// to the cgroup: the kernel runs it on every open and mknod of a device node and refuses the
// access when it returns 0. devicesProgram compiles the OCI rules into that program; the last
// rule that matches an access decides, as writes to v1's devices.allow/deny do.

// bpf instruction encodings (linux/bpf.h, linux/bpf_common.h).
const (
	opLdxMemW  = 0x61 // dst = *(u32 *)(src + off)
	opMov32X   = 0xbc // w(dst) = w(src)
	opAnd32K   = 0x54 // w(dst) &= imm
	opRsh32K   = 0x74 // w(dst) >>= imm
	opMov64X   = 0xbf // dst = src
	opAnd64K   = 0x57 // dst &= imm
	opMov64K   = 0xb7 // dst = imm
	opJneK     = 0x55 // if dst != imm goto pc+off
	opExit     = 0x95
	accessAll  = unix.BPF_DEVCG_ACC_MKNOD | unix.BPF_DEVCG_ACC_READ | unix.BPF_DEVCG_ACC_WRITE
	bpfLogSize = 64 * 1024
)

type insn struct {
	code uint8
	regs uint8 // dst and src register, as the kernel's bit fields lay them out
	off  int16
	imm  int32
}

var bigEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 0 }()

func ins(code uint8, dst, src uint8, off int16, imm int32) insn {
	regs := dst | src<<4
	if bigEndian {
		regs = dst<<4 | src
	}
	return insn{code: code, regs: regs, off: off, imm: imm}
}

// devicesProgram compiles rules. Registers after the prologue: w2 the access asked for (mknod 1,
// read 2, write 4), w3 the device type (block 1, char 2), w4 the major, w5 the minor number.
func devicesProgram(rules []specs.LinuxDeviceCgroup) ([]insn, error) {
	prog := []insn{
		ins(opLdxMemW, 2, 1, 0, 0), // access_type: access << 16 | type
		ins(opMov32X, 3, 2, 0, 0),
		ins(opAnd32K, 3, 0, 0, 0xffff),
		ins(opRsh32K, 2, 0, 0, 16),
		ins(opLdxMemW, 4, 1, 4, 0), // major
		ins(opLdxMemW, 5, 1, 8, 0), // minor
	}
	// Last match wins: test the rules from the last to the first, return at the first match.
	for i := len(rules) - 1; i >= 0; i-- {
		r := rules[i]
		var block []insn
		switch r.Type {
		case "", "a":
		case "c":
			block = append(block, ins(opJneK, 3, 0, 0, unix.BPF_DEVCG_DEV_CHAR))
		case "b":
			block = append(block, ins(opJneK, 3, 0, 0, unix.BPF_DEVCG_DEV_BLOCK))
		default:
			return nil, fmt.Errorf("device rule %d: type %q: want a, b or c: %w", i, r.Type, errdefs.ErrInvalidArgument)
		}
		access := int32(0)
		for _, c := range r.Access {
			switch c {
			case 'm':
				access |= unix.BPF_DEVCG_ACC_MKNOD
			case 'r':
				access |= unix.BPF_DEVCG_ACC_READ
			case 'w':
				access |= unix.BPF_DEVCG_ACC_WRITE
			default:
				return nil, fmt.Errorf("device rule %d: access %q: want letters of rwm: %w", i, r.Access, errdefs.ErrInvalidArgument)
			}
		}
		if r.Access == "" {
			access = accessAll
		}
		if access != accessAll {
			// Matches only if every access asked for is in the rule.
			block = append(block, ins(opMov64X, 1, 2, 0, 0), ins(opAnd64K, 1, 0, 0, ^access&accessAll), ins(opJneK, 1, 0, 0, 0))
		}
		if r.Major != nil && *r.Major >= 0 {
			block = append(block, ins(opJneK, 4, 0, 0, int32(*r.Major)))
		}
		if r.Minor != nil && *r.Minor >= 0 {
			block = append(block, ins(opJneK, 5, 0, 0, int32(*r.Minor)))
		}
		verdict := int32(0)
		if r.Allow {
			verdict = 1
		}
		always := len(block) == 0
		block = append(block, ins(opMov64K, 0, 0, 0, verdict), ins(opExit, 0, 0, 0, 0))
		for j := range block {
			if block[j].code == opJneK {
				block[j].off = int16(len(block) - j - 1) // to the next rule
			}
		}
		prog = append(prog, block...)
		if always {
			// The rule matches every access: earlier rules cannot decide anything (and the
			// verifier refuses unreachable code).
			return prog, nil
		}
	}
	// No rule matched: allow, as a cgroup without rules does.
	return append(prog, ins(opMov64K, 0, 0, 0, 1), ins(opExit, 0, 0, 0, 0)), nil
}

// attachDevices loads the program for rules and attaches it to the v2 cgroup at dir. The program
// stays attached (and loaded) until the cgroup is removed.
func attachDevices(dir string, rules []specs.LinuxDeviceCgroup) error {
	prog, err := devicesProgram(rules)
	if err != nil {
		return err
	}
	license := []byte("Apache-2.0\x00")
	load := struct {
		progType, insnCnt      uint32
		insns, license         uint64
		logLevel, logSize      uint32
		logBuf                 uint64
		kernVersion, progFlags uint32
		progName               [16]byte
		progIfindex            uint32
		expectedAttachType     uint32
	}{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(prog)),
		insns:    uint64(uintptr(unsafe.Pointer(&prog[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	copy(load.progName[:], "ov_devices")
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&load)), unsafe.Sizeof(load))
	if errno != 0 {
		// Load again with the verifier's log, for the error message.
		log := make([]byte, bpfLogSize)
		load.logLevel, load.logSize, load.logBuf = 1, bpfLogSize, uint64(uintptr(unsafe.Pointer(&log[0])))
		_, _, _ = unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&load)), unsafe.Sizeof(load))
		runtime.KeepAlive(log)
		return fmt.Errorf("load the device filter (eBPF): %w: %s", errno, strings.TrimRight(string(log), "\x00"))
	}
	runtime.KeepAlive(prog)
	runtime.KeepAlive(license)
	defer unix.Close(int(fd))
	cg, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(cg)
	attach := struct{ targetFd, attachBpfFd, attachType, attachFlags uint32 }{
		targetFd: uint32(cg), attachBpfFd: uint32(fd), attachType: unix.BPF_CGROUP_DEVICE,
		// Several programs may sit on the path (systemd attaches its own to the parents); an
		// access must pass all of them.
		attachFlags: unix.BPF_F_ALLOW_MULTI,
	}
	if _, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_ATTACH, uintptr(unsafe.Pointer(&attach)), unsafe.Sizeof(attach)); errno != 0 {
		return fmt.Errorf("attach the device filter to %s: %w", dir, errno)
	}
	return nil
}

var errDevicesFixed = errors.New("device rules are fixed when a cgroup v2 cgroup is created")
