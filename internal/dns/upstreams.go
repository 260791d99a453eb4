package dns

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
)

// HostUpstreams returns the nameservers of a resolv.conf on port 53, skipping loopback and
// unspecified ones (a container cannot reach the host's 127.0.0.53 by itself).
func HostUpstreams(resolvConf []byte) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range Nameservers(resolvConf) {
		if !a.IsLoopback() && !a.IsUnspecified() {
			out = append(out, netip.AddrPortFrom(a, Port))
		}
	}
	return out
}

// Nameservers returns every address on a nameserver line of a resolv.conf, in order, loopback ones
// included; lines that do not parse are skipped.
func Nameservers(resolvConf []byte) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(resolvConf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(f[1]); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}
