package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestRunDNSFlags: --network-alias, --dns, --dns-search and --dns-option (each repeatable) reach the
// create request; an alias without a user-defined network is refused before anything is sent.
func TestRunDNSFlags(t *testing.T) {
	parse := func(args ...string) (*runFlags, []string) {
		t.Helper()
		var f runFlags
		cmd := &cobra.Command{Use: "run"}
		f.register(cmd, true)
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		return &f, cmd.Flags().Args()
	}
	f, args := parse("--network", "front", "--network-alias", "web", "--network-alias", "www", "--dns", "192.0.2.53",
		"--dns", "192.0.2.54", "--dns-search", "example.com", "--dns-option", "ndots:2", "--dns-option", "edns0", "busybox", "sh")
	req, err := f.request(args)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(req.NetworkAliases, []string{"web", "www"}) || !slices.Equal(req.DNS, []string{"192.0.2.53", "192.0.2.54"}) ||
		!slices.Equal(req.DNSSearch, []string{"example.com"}) || !slices.Equal(req.DNSOptions, []string{"ndots:2", "edns0"}) {
		t.Fatalf("request: %+v", req)
	}
	f, args = parse("--network-alias", "web", "busybox")
	if _, err := f.request(args); err == nil || !strings.Contains(err.Error(), "network-scoped alias is supported only for containers in user defined networks") {
		t.Fatalf("alias on the default network: %v", err)
	}
}
