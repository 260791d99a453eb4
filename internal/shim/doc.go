// Package shim is the per-container process that sits between the agent and the OCI runtime binary
// (ovrt or runc), like containerd-shim. One shim runs per container, in its own session, so that the
// agent can be killed or restarted without touching the container.
//
// The shim owns:
//   - the container's stdio: pipes (or the pty master received through --console-socket when the
//     container has a terminal), copied into a json-lines log file and to attached clients;
//   - its exit status: the shim is a child subreaper, so the container's init (whose parent, the runtime
//     binary, exits after `create`) is reparented to it and reaped by it; the status is written to an
//     exit file and answered to every waiter;
//   - a small HTTP API on its own unix socket (state, start, kill, wait, attach, exec, logs, resize, delete).
//
// Invariants: the shim never exits while its container runs, unless told to delete it; once the container
// has exited, the exit file exists before any waiter is answered; attach and exec streams deliver every
// byte of output before the final exit frame.
//
// The streams are api's frames (api.FrameWriter, api.ReadFrame). Files by job: shim_linux.go (Config,
// Run), runtime_linux.go (running the OCI runtime), process_linux.go (create, exit), stdio_linux.go
// (pipes and terminals), stream_linux.go (output to the log and to subscribers, input frames),
// exec_linux.go, logfile.go, handlers_linux.go (the HTTP API), client.go (its client).
package shim
