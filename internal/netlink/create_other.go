//go:build !linux

package netlink

import (
	"fmt"

	"github.com/ovnet/ov/internal/errdefs"
)

// Create needs Linux.
func (System) Create(path string) error {
	return fmt.Errorf("create network namespace %s: network namespaces need Linux: %w", path, errdefs.ErrUnavailable)
}

// Remove needs Linux.
func (System) Remove(path string) error {
	return fmt.Errorf("remove network namespace %s: network namespaces need Linux: %w", path, errdefs.ErrUnavailable)
}
