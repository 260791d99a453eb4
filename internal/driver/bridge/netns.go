package bridge

import (
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// NetnsPath is where the network namespace of a container lives (Config.NetnsDir/<container>).
func (d *Driver) NetnsPath(container string) string {
	return filepath.Join(d.cfg.NetnsDir, container)
}

// CreateNetns makes the container's network namespace (bind-mounted at NetnsPath, with lo up) and
// returns its path; it is what the runtime joins. Creating an existing one returns it unchanged. Use it
// for bridge networks and for --network none. The host's loopback guard is put in place first (every
// container namespace, an overlay container's too, is made here); when it cannot be, nothing is made
// and the error says why.
func (d *Driver) CreateNetns(ctx context.Context, container string) (string, error) {
	if !validID(container) {
		return "", errorf(errdefs.ErrInvalidArgument, "container ID %q cannot name a namespace file; use letters, digits, '_', '.' or '-'", container)
	}
	d.mu.Lock()
	err := d.ensureGuard()
	d.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("container %s: %w", container, err)
	}
	p := d.NetnsPath(container)
	if err := d.ensureNetns(p); err != nil {
		return "", fmt.Errorf("container %s: create network namespace %s: %w", container, p, err)
	}
	return p, nil
}

// RemoveNetns unmounts and removes the container's network namespace; a missing one is not an error.
// Detach (or DetachAll) first to release the container's addresses.
func (d *Driver) RemoveNetns(ctx context.Context, container string) error {
	if !validID(container) {
		return errorf(errdefs.ErrInvalidArgument, "container ID %q cannot name a namespace file", container)
	}
	return d.nl.Remove(d.NetnsPath(container))
}

// CheckNetns validates the namespace a --network container:NAME joins: path must be a network namespace
// (a file under NetnsDir or /proc/PID/ns/net). Nothing is built for that mode.
func (d *Driver) CheckNetns(path string) error {
	if err := d.checkNetns(path); err != nil {
		return errorf(errdefs.ErrNotFound, "network namespace %s: %v; is the container running?", path, err)
	}
	return nil
}

func validID(s string) bool {
	return api.ValidName(s) || (len(s) == 64 && isHex(s))
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}
