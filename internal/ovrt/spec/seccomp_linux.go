package spec

import (
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// seccompProfile converts Docker's default seccomp profile for s: the syscalls a capability
// unlocks (mount with CAP_SYS_ADMIN, ...) are allowed only when s's bounding set holds it.
func seccompProfile(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	return seccomp.GetDefaultProfile(s)
}
