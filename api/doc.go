// Package api holds the wire types shared by ovctl, ovagent and ovcontroller. Each type that arrives
// from outside has a Validate method that returns an errdefs.ErrInvalidArgument naming the field and the
// fix. The types are plain data: no behaviour beyond validation and small helpers.
//
// Files: network.go (networks, endpoints, hosts: the cluster state the controller owns),
// and one file per further API surface.
package api
