// Package rootdir works on paths inside a directory tree that someone else controls: a container's
// root filesystem, whose symlinks, FIFOs and layout are the image's (or a container process's) to
// choose. A Dir is the tree opened once as a file descriptor; every path given to it is a path of
// the container ("/etc/passwd", "dev/null"), resolved by the kernel beneath that descriptor with
// openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS).
//
// Invariants:
//   - No path ever resolves outside the tree: an absolute symlink or ".." is taken relative to the
//     tree's root, as the container would see it after pivot_root, and /proc magic links are refused.
//     This holds while the tree changes under us (a symlink swapped in during the call): each step
//     is one openat2 or one *at call on a descriptor already inside.
//   - Files and directories are created with mkdirat/openat(O_CREAT|O_EXCL)/mknodat/symlinkat in the
//     resolved parent directory, never through a host path string.
//   - Handles are O_PATH (they open nothing with side effects: no FIFO blocks, no device opens);
//     ReadFile reads only a regular file, never blocks and reads at most a bound.
//
// Unprotected is a switch for the attack tests: in a build with the ovrt_unprotect tag (and only
// there) the environment variable OVRT_UNPROTECT can turn a protection off, so that a test can show
// that it fails without it. Normal builds have no such switch.
package rootdir
