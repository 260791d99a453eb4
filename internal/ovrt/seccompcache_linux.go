package ovrt

import (
	"path/filepath"

	"github.com/ovnet/ov/internal/ovrt/seccomp"
)

// seccompCache keeps compiled seccomp programs under the state root, in a directory whose name no
// container ID can take (IDs start with a letter or digit), so List skips it.
func (r *Runtime) seccompCache() seccomp.Cache {
	return seccomp.Cache{Dir: filepath.Join(r.cfg.Root, ".seccomp")}
}
