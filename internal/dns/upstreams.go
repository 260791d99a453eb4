package dns

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
)

// HostUpstreams returns the nameservers of a resolv.conf on port 53, skipping loopback ones (a
// container cannot reach the host's 127.0.0.53) and lines that do not parse. An IPv6 zone
// (fe80::1%eth0) is kept.
func HostUpstreams(resolvConf []byte) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(resolvConf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.Unmap().IsLoopback() || a.IsUnspecified() {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), Port))
	}
	return out
}
