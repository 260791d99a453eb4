package overlay

import (
	"context"
	"time"
)

// The host list (every registered host with its address, for the VTEPs and the gossip seeds) costs the
// controller three reads over every host and an answer of every host: read at every heartbeat by every
// host, that is hosts^2 / 2 s of work for the controller (cmd/ovbench-scale: docs/performance.md, scale
// section). A heartbeat reads it only when the last read is older than Config.HostListEvery; what
// makes it news comes through gossip sooner anyway: a host that registers is refused by gossip until
// the list names it, and a refusal or any change of the members reads the list at once (Run's
// refreshNow). Registration reads it too.

// swapHostsRevision records rev as the last hosts revision a heartbeat reported and returns the one
// before.
func (d *Driver) swapHostsRevision(rev int64) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	prev := d.hostsRev
	d.hostsRev = rev
	return prev
}

// noteHostsRead records that the host list was just read.
func (d *Driver) noteHostsRead() {
	d.mu.Lock()
	d.hostsRead = time.Now()
	d.mu.Unlock()
}

// refreshHostsIfDue reads the host list when the last read is older than Config.HostListEvery.
func (d *Driver) refreshHostsIfDue(ctx context.Context) {
	d.mu.Lock()
	due := time.Since(d.hostsRead) >= d.cfg.HostListEvery
	d.mu.Unlock()
	if due {
		d.refreshHosts(ctx)
	}
}
