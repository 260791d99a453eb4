package overlay

import (
	"context"
	"time"
)

// persistEvery is the least time between two state file writes the saver makes for watch events.
// An event that arrives within it after a write reaches the file only at its end: an agent killed
// meanwhile restarts without it and, until its watch replays it, withdraws that peer's kernel
// entries (one lost ping in TestAgentRestart with 1 s, when the kill came 0.8 s after the event).
// 250 ms keeps that window short and still coalesces a burst into at most 4 writes a second.
const persistEvery = 250 * time.Millisecond

// persistSoon has the saver write the state file for a watch event, rather than writing it now: the
// events of a burst (a host sees one per endpoint created or removed anywhere on the networks it
// serves, so a busy 1,000-host cluster sends it many per second) coalesce into one write of the whole
// state, instead of one encoding of every peer and one fsync each (measured by cmd/ovbench-scale:
// docs/performance.md, scale section). The invariant holds: a write is a snapshot taken under d.mu,
// so the file's watch revision always matches its remote endpoints; a file a few events behind only
// makes a restarted agent's watch replay them. Without a running Run (no saver) it writes at once.
func (d *Driver) persistSoon() {
	d.mu.Lock()
	running := d.runCtx != nil && d.runCtx.Err() == nil && d.saveKick != nil
	d.mu.Unlock()
	if !running {
		_ = d.persist()
		return
	}
	select {
	case d.saveKick <- struct{}{}:
	default: // a write is pending already: it will hold this change too
	}
}

// runSaver writes the state file when persistSoon asks, at most once per persistEvery, and once
// more when ctx ends if a write is pending.
func (d *Driver) runSaver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			select {
			case <-d.saveKick:
				_ = d.persist()
			default:
			}
			return
		case <-d.saveKick:
			_ = d.persist()
		}
		select {
		case <-ctx.Done():
		case <-time.After(persistEvery):
		}
	}
}
