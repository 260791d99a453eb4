//go:build !linux

package wireguard

import (
	"errors"
	"log/slog"

	"github.com/ovnet/ov/internal/netlink"
)

var errLinuxOnly = errors.New("ov's WireGuard tunnel runs on Linux only")

func openKernel(netlink.Handle, Config) (backend, error)       { return nil, errLinuxOnly }
func openUserspace(Config, int, *slog.Logger) (backend, error) { return nil, errLinuxOnly }
