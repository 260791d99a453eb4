package vxlan

import (
	"reflect"
	"time"
)

// Reconciled is what one reconcile did, for Config.OnReconcile.
type Reconciled struct {
	Took    time.Duration // from its start to its end
	Changes int           // kernel and firewall changes it made (links, addresses, routes, entries, rules)
	// Repairs are the changes it made although the desired state was the one the previous reconcile
	// had converged to without error: drift of the kernel (an entry deleted or changed behind ov's
	// back, a link gone) found and fixed. Changes made for a new desired state, or to finish a
	// reconcile that failed, are no repairs. (A reconcile that brings a new desired state and also
	// meets drift counts none of its changes as repairs: the count is a lower bound.)
	Repairs int
	Err     error // the reconcile's error; nil when it converged
	// Networks is how many networks it programmed; Partial: it was a reconcile of the networks a
	// KickNetwork named, alone (RunNetworks), whose Repairs count the drift of those networks only.
	Networks int
	Partial  bool
}

// countChanges counts a reconcile r (Took, Changes, Err, Networks and Partial set) of the sanitized
// state s, the whole host's: Status's counters, and Config.OnReconcile. same tells whether the
// desired state of what it reconciled is the one the previous reconcile converged to. Callers hold
// d.mu.
func (d *Driver) countChanges(s State, same func() bool, r Reconciled) {
	if r.Changes > 0 && d.convergedOK && same() {
		r.Repairs = r.Changes
		d.log.Info("repaired drift of the kernel: entries changed behind ov's back were programmed again", "changes", r.Changes)
	}
	d.converged, d.convergedOK = s, r.Err == nil
	d.smu.Lock()
	d.status.Changes += uint64(r.Changes)
	d.status.Repairs += uint64(r.Repairs)
	d.status.NetworksReconciled += uint64(r.Networks)
	if r.Partial {
		d.status.Partial++
	}
	d.smu.Unlock()
	if d.cfg.OnReconcile != nil {
		d.cfg.OnReconcile(r)
	}
}

// sameState is reflect.DeepEqual(a, b), answered at once when the numbers of networks, endpoints,
// peers or VTEPs differ (a new endpoint, the usual change): a full comparison of 10,000 peers takes
// about 5 ms, and is left for reconciles of states of the same size that made changes.
func sameState(a, b State) bool {
	if len(a.Networks) != len(b.Networks) {
		return false
	}
	for i := range a.Networks {
		x, y := &a.Networks[i], &b.Networks[i]
		if len(x.Endpoints) != len(y.Endpoints) || len(x.Peers) != len(y.Peers) || len(x.VTEPs) != len(y.VTEPs) {
			return false
		}
	}
	return reflect.DeepEqual(a, b)
}
