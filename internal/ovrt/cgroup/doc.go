// Package cgroup owns the control groups of ov's containers: it detects how the host mounts cgroups
// (v1, v2 or hybrid, always from /proc/self/mountinfo), creates a container's cgroup in every
// hierarchy, applies the OCI resource limits (memory, cpu, cpuset, pids, and devices through v1's
// devices controller or a v2 eBPF device filter), moves processes in, reports OOM kills and usage,
// kills everything inside, and removes the cgroup.
//
// Invariants:
//   - A Cgroup is named by an absolute path (the OCI spec's linux.cgroupsPath, e.g. "/ov/<id>"),
//     resolved against the root of every hierarchy, as runc does.
//   - On v1 the cgroup exists in every mounted v1 controller hierarchy (and, best effort, in the
//     hierarchies without controllers: name=systemd and a hybrid host's cgroup2 mount); on v2 it is
//     one directory whose ancestors have the needed controllers enabled in cgroup.subtree_control.
//   - Delete removes the cgroup from every hierarchy, and refuses (errdefs.ErrConflict) while
//     processes remain; parents such as "/ov" are shared by containers and are left in place.
//   - Kill freezes the cgroup first when a freezer exists (or uses cgroup.kill on v2), so processes
//     forked while it runs are killed too.
package cgroup
