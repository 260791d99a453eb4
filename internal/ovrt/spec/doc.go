// Package spec builds the OCI runtime spec (config.json) of a container the way Docker does for
// `docker run`: Docker's 14 default capabilities, its default seccomp profile, masked and read-only
// paths, default mounts, device rules and rlimits, plus no_new_privs; --privileged lifts those
// restrictions. Default is a plain function of its Options: same options, same spec.
package spec
