// Package agent is ov's host daemon: the container engine behind the local HTTP API (/v1/... on a unix
// socket) that ovctl drives. It turns a create request into an OCI bundle (an image's copy-on-write
// rootfs from runtime/image, a spec, a network namespace wired by a network driver), starts one shim
// (runtime/shim) per container to drive the OCI runtime binary, and keeps its records in JSON files so
// that a restarted (or SIGKILLed) agent reconnects to the shims and finds every container as it was.
//
// Layout (Config): Root (/var/lib/ov) holds containers/<id>/{container.json, <id>-json.log, exit.json},
// the image store and network state; RunDir (/run/ov) holds agent.sock, shims/<short-id>.sock,
// containers/<id>/ (the bundle: config.json and the shim's scratch files), netns/ and the runtime's root.
//
// Invariants:
//   - a container record is written (atomically) before the agent answers the request that made or
//     changed it; a record on disk is the agent's only truth after a restart, with the shim's state;
//   - names are unique among the agent's containers; IDs are 64 hex digits, and any unique prefix
//     of at least one digit finds a container, as does its name;
//   - create either completes or undoes every step it made (rootfs, network namespace, veth, address,
//     bundle, name) before it answers an error;
//   - remove undoes everything create made; what it cannot undo it logs and still forgets the
//     container, so a retry has nothing to trip on.
//
// Extension point: Config.Drivers maps a driver name (bridge, overlay, ...) to a driver.NetworkDriver; the
// agent keeps no driver-specific logic.
package agent
