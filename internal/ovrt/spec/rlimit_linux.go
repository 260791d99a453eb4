package spec

import "golang.org/x/sys/unix"

// Docker 25+ containers get RLIMIT_NOFILE 1024:524288 (containerd's and systemd's defaults).
const (
	nofileSoft = 1024
	nofileHard = 524288
)

// nofile returns the RLIMIT_NOFILE a container gets: Docker's, with the hard limit lowered to the
// caller's own when the caller's is lower (a runtime without CAP_SYS_RESOURCE cannot raise it, and
// runc then refuses to start the container).
func nofile() (soft, hard uint64) {
	soft, hard = nofileSoft, nofileHard
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err == nil && r.Max < hard {
		hard = r.Max
	}
	return min(soft, hard), hard
}
