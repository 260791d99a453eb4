package cgroup

import (
	"errors"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/internal/errdefs"
)

func TestDevicesProgram(t *testing.T) {
	major := int64(1)
	tests := []struct {
		name     string
		rules    []specs.LinuxDeviceCgroup
		wantErr  bool
		fallback bool // the program ends with "no rule matched: allow"
	}{
		{name: "deny all first: no fallback", rules: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Major: &major, Access: "rw"}}},
		{name: "only exceptions: fallback allows", rules: []specs.LinuxDeviceCgroup{{Allow: false, Type: "b", Access: "rwm"}}, fallback: true},
		{name: "bad type", rules: []specs.LinuxDeviceCgroup{{Type: "x"}}, wantErr: true},
		{name: "bad access", rules: []specs.LinuxDeviceCgroup{{Type: "c", Access: "rwx"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := devicesProgram(tt.rules)
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want ErrInvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			last := prog[len(prog)-2]
			if got := last.code == opMov64K && last.imm == 1; got != tt.fallback {
				t.Errorf("program ends with %+v; fallback = %v, want %v", last, got, tt.fallback)
			}
			for i, in := range prog {
				if in.code == opJneK && (int(in.off) <= 0 || i+1+int(in.off) >= len(prog)) {
					t.Errorf("insn %d jumps %d, out of the program of %d", i, in.off, len(prog))
				}
			}
		})
	}
}
