package vxlan

// LastChanges reports how many kernel changes the last reconcile made.
func LastChanges(d *Driver) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastChanges
}
