package main

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A host behind a local stub (systemd-resolved: nameserver 127.0.0.53) forwards containers' outside
// names to the servers behind the stub, or to the stub itself when those are unknown, never to none.
func TestHostUpstreams(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ap := func(s ...string) []netip.AddrPort {
		var out []netip.AddrPort
		for _, a := range s {
			out = append(out, netip.MustParseAddrPort(a))
		}
		return out
	}
	plain := write("plain", "search example.com\nnameserver 192.0.2.1\nnameserver 127.0.0.53\nnameserver 192.0.2.2\n")
	stub := write("stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\n")
	resolved := write("resolved", "nameserver 198.51.100.7\n")
	empty := write("empty", "search example.com\n")
	for _, tc := range []struct {
		name, host, stub string
		want             []netip.AddrPort
	}{
		{"host servers, loopback skipped", plain, resolved, ap("192.0.2.1:53", "192.0.2.2:53")},
		{"stub: the servers behind it", stub, resolved, ap("198.51.100.7:53")},
		{"stub, nothing behind it known: the stub", stub, filepath.Join(dir, "missing"), ap("127.0.0.53:53")},
		{"no nameserver at all", empty, resolved, nil},
		{"no resolv.conf", filepath.Join(dir, "missing"), resolved, nil},
	} {
		if got := hostUpstreams(tc.host, tc.stub, log); !slices.Equal(got, tc.want) {
			t.Errorf("%s: upstreams %v, want %v", tc.name, got, tc.want)
		}
	}
}
