package api

import (
	"runtime"
	"runtime/debug"
)

// ReleaseVersion is the version of ov's binaries (ovctl, ovagent).
const ReleaseVersion = "0.1.0"

// WithBuildInfo is v with the running binary's Go version, OS, architecture and the git commit it
// was built from ("" when go build did not record one; "-dirty" is added for a modified tree).
func WithBuildInfo(v Version) Version {
	v.GoVersion, v.Os, v.Arch = runtime.Version(), runtime.GOOS, runtime.GOARCH
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if len(rev) > 7 {
			rev = rev[:7]
		}
		if rev != "" {
			v.GitCommit = rev + dirty
		}
	}
	return v
}
