package overlay

import (
	"context"
	"time"
)

// The host list (every registered host with its address, for the VTEPs and the gossip seeds) costs the
// controller an answer naming every host: read at every heartbeat by every host, that is hosts^2 / 2 s
// of work for the controller (cmd/ovbench-scale: docs/performance.md, scale section). The heartbeat's
// answer carries the revision of the last change to any host record, and a heartbeat reads the list
// only when that revision changed, or when the last read is older than Config.HostListSafetyEvery
// (10 minutes: a safety net), so a quiet cluster costs the controller hosts / 10 min lists. Against a
// controller that does not report the revision, it reads the list every Config.HostListEvery (30 s).
// What makes the list news comes through gossip sooner anyway: a host that registers is refused by
// gossip until the list names it, and a refusal or any change of the members reads the list at once
// (Run's refreshNow). Registration reads it too.

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

// refreshHostsIfDue reads the host list when the last read is older than every.
func (d *Driver) refreshHostsIfDue(ctx context.Context, every time.Duration) {
	d.mu.Lock()
	due := time.Since(d.hostsRead) >= every
	d.mu.Unlock()
	if due {
		d.refreshHosts(ctx)
	}
}
