// Package seccomp compiles an OCI seccomp profile (specs.LinuxSeccomp) into a kernel BPF program with
// libseccomp, and loads such a program on the calling thread with seccomp(2).
//
// Invariants: Compile does all the work that can fail on a bad profile (unknown action, operator or
// architecture) so that a container runtime can report it before the container starts; the Program
// is plain data, so the runtime compiles it in its own process while the container's init boots, and
// the init only hands it to the kernel. Load never sets no_new_privs by itself (the OCI process
// decides that) and never synchronises the filter to other threads: it must run on the locked OS
// thread that is about to execve the container process. Syscall names the local libseccomp does not know are
// skipped, as runc does, so that a profile written for a newer kernel still loads.
package seccomp
