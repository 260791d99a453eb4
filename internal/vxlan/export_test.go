package vxlan

import "context"

// LastChanges reports how many kernel changes the last reconcile made.
func LastChanges(d *Driver) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastChanges
}

// ReconcileKicked is the reconcile Run does on a Kick: the whole state, the iptables pass skipped
// when the rules are unchanged.
func ReconcileKicked(ctx context.Context, d *Driver, s State) error {
	return d.reconcile(ctx, s, false)
}

// ReconcileNetworks is the reconcile Run does on KickNetwork(names...), got being their state.
func ReconcileNetworks(ctx context.Context, d *Driver, names []string, got State) error {
	return d.reconcileNetworks(ctx, names, got)
}
