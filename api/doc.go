// Package api holds the wire protocol shared by ovctl, ovagent, the shims and ovcontroller. Each type
// that arrives from outside has a Validate method (or a Parse function) that returns an
// errdefs.ErrInvalidArgument naming the field and the fix. The types are plain data: no behaviour
// beyond validation, parsing and the small helpers that speak the protocol.
//
// Files: network.go (networks, endpoints, hosts: the cluster state the controller owns), agent.go
// (containers, images: the agent's local API), controller.go, stream.go (the framed attach, exec and
// logs streams and Winsize), transport.go (HTTP over a unix socket; decoding an error answer into its
// errdefs class), logs.go (the logs tail value) and portspec.go (-p values).
package api
