package api

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
)

// Limits of the names an endpoint carries (Endpoint.Names): the controller refuses more, so that an
// agent cannot fill the cluster store, or every host's resolver, with junk.
const (
	MaxEndpointNames = 32  // names per endpoint
	MaxDNSNameLen    = 253 // characters of one name, as DNS allows
	MaxDNSLabelLen   = 63  // characters between two dots
)

// ValidDNSName reports whether s may be looked up in the containers' resolver: labels of 1-63 letters,
// digits, '-' or '_' (Docker's generated names have one), separated by dots, none starting or ending
// with '-', 253 characters at most. A trailing dot is not allowed.
func ValidDNSName(s string) bool {
	if len(s) == 0 || len(s) > MaxDNSNameLen {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > MaxDNSLabelLen || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ValidateEndpointNames checks the names an endpoint carries (see MaxEndpointNames).
func ValidateEndpointNames(names []string) error {
	if len(names) > MaxEndpointNames {
		return fmt.Errorf("endpoint: %d names; at most %d are allowed (the container's name, its hostname and its aliases): %w", len(names), MaxEndpointNames, errdefs.ErrInvalidArgument)
	}
	for _, n := range names {
		if !ValidDNSName(n) {
			return fmt.Errorf("endpoint: name %.80q is not a DNS name (labels of 1-63 letters, digits, '-' or '_', 253 characters at most): %w", n, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// defaultBridge reports whether a --network value names the default bridge network.
func defaultBridge(network string) bool {
	return network == "" || network == "default" || network == NetworkModeDefault
}

// ValidateAliases checks --network-alias (or network connect --alias) values for a container on
// network (a --network value).
func ValidateAliases(network string, aliases []string) error {
	if len(aliases) == 0 {
		return nil
	}
	switch {
	case network == DriverHost || network == DriverNone || strings.HasPrefix(network, NetworkModeContainer) || defaultBridge(network):
		return fmt.Errorf("--network-alias: network-scoped alias is supported only for containers in user defined networks (not %q); create one with `ovctl network create` and use --network NAME: %w", firstNonEmptyStr(network, NetworkModeDefault), errdefs.ErrInvalidArgument)
	case len(aliases) > MaxEndpointNames-2:
		return fmt.Errorf("--network-alias: %d aliases; at most %d are allowed: %w", len(aliases), MaxEndpointNames-2, errdefs.ErrInvalidArgument)
	}
	for _, a := range aliases {
		if !ValidDNSName(a) {
			return fmt.Errorf("--network-alias %q is not a valid DNS name; use labels of 1-63 letters, digits, '-' or '_' separated by dots: %w", a, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// validateDNSConfig checks --dns, --dns-search and --dns-option.
func (c *ContainerCreate) validateDNSConfig() error {
	if c.Network == DriverHost && (len(c.DNS) > 0 || len(c.DNSSearch) > 0 || len(c.DNSOptions) > 0) {
		return fmt.Errorf("--dns, --dns-search and --dns-option cannot be used with --network host (the container uses the host's resolv.conf): %w", errdefs.ErrInvalidArgument)
	}
	for _, s := range c.DNS {
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("--dns %q is not an IP address; give a nameserver's address such as 192.0.2.53: %w", s, errdefs.ErrInvalidArgument)
		}
	}
	for _, s := range c.DNSSearch {
		if s != "." && !ValidDNSName(strings.TrimSuffix(s, ".")) {
			return fmt.Errorf("--dns-search %q is not a DNS domain (or \".\" for none): %w", s, errdefs.ErrInvalidArgument)
		}
	}
	for _, s := range c.DNSOptions {
		if s == "" || len(s) > 64 || strings.ContainsAny(s, " \t\r\n#;") {
			return fmt.Errorf("--dns-option %q: give one resolv.conf option such as ndots:2 or edns0: %w", s, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func firstNonEmptyStr(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
