package driver

import (
	"fmt"
	"strings"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// Network modes a container can ask for with --network.
const (
	ModeNetwork   = "network"   // a bridge (or overlay) network by name
	ModeHost      = "host"      // no namespace: the host's stack
	ModeNone      = "none"      // a namespace with only lo
	ModeContainer = "container" // another container's namespace
)

// DefaultNetwork is the name of the default bridge network (like Docker's "bridge").
const DefaultNetwork = "bridge"

// Mode is a parsed network mode (ovctl run --network).
type Mode struct {
	Kind      string // one of the Mode* constants
	Network   string // ModeNetwork: the network's name
	Container string // ModeContainer: the other container's name or ID
}

// ParseMode parses a network mode: "" or "default" (the default bridge network), "host", "none",
// "container:NAME", or a network name.
func ParseMode(s string) (Mode, error) {
	switch {
	case s == "" || s == "default":
		return Mode{Kind: ModeNetwork, Network: DefaultNetwork}, nil
	case s == ModeHost:
		return Mode{Kind: ModeHost}, nil
	case s == ModeNone:
		return Mode{Kind: ModeNone}, nil
	case strings.HasPrefix(s, "container:"):
		name := strings.TrimPrefix(s, "container:")
		if name == "" {
			return Mode{}, fmt.Errorf("invalid network mode %q: no container named; use container:NAME: %w", s, errdefs.ErrInvalidArgument)
		}
		return Mode{Kind: ModeContainer, Container: name}, nil
	case api.ValidName(s):
		return Mode{Kind: ModeNetwork, Network: s}, nil
	}
	return Mode{}, fmt.Errorf("invalid network mode %q: use host, none, container:NAME or a network name: %w", s, errdefs.ErrInvalidArgument)
}
