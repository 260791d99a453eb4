// Package ovrt is ov's OCI runtime library: it takes an OCI bundle (config.json with
// github.com/opencontainers/runtime-spec types, and a root filesystem) to a running container, and
// drives it through the OCI lifecycle: Create (the process waits), Start, State, Kill, Delete, plus
// Exec (a second process joining all of the container's namespaces) and Processes.
//
// A Runtime keeps one directory per container under Config.Root (state.json, written atomically, and
// exec.fifo while the container is created but not started). Any process can Load a container that
// another process created: the state file plus the kernel (the init's pid and start time, the
// fifo, the cgroup) are the whole truth; nothing is kept in memory between calls.
//
// Invariants:
//   - The container's init and exec helpers run Config.Binary from a detached read-only bind mount
//     (or a sealed memfd copy), so a container process can never overwrite the runtime executable
//     on the host through /proc/<pid>/exe (CVE-2019-5736).
//   - Binaries that create containers must call Init first thing in main: the container's init and
//     exec helpers are that same program started in a special mode.
//   - Every mount the container makes happens inside its own mount namespace after "/" was made
//     slave (or the spec's rootfsPropagation), so nothing leaks to the host and nothing is left after
//     the namespace dies.
//   - No path of the container is ever used as a host path: mount destinations, /dev entries and the
//     image's /etc/passwd are resolved beneath the rootfs descriptor (package rootdir), mounts are
//     made onto the descriptor of their destination and checked after, so a symlink in the image or
//     one swapped in during create cannot make the runtime touch anything outside the rootfs.
//   - A read-only recursive bind (a `-v SRC:DST:ro` volume) is read-only in every mount below it.
//   - Security settings (capabilities, no_new_privs, seccomp) are applied on the locked OS thread
//     that calls execve, seccomp last.
//   - A failed Create leaves nothing behind: no state directory, cgroup or process.
//
// See docs/runtime.md for the design and the order of operations.
package ovrt
