//go:build !linux

package bridge

import (
	"fmt"

	"github.com/ovnet/ov/internal/errdefs"
)

func newKernel() (kernel, error) {
	return nil, fmt.Errorf("network: bridge networks need Linux: %w", errdefs.ErrUnavailable)
}
