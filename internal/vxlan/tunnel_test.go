package vxlan

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/iptables"
)

// TestTunnelRules: with an encrypted network the ingress filter drops its VNI from any interface but
// the tunnel before any accept rule, accepts it only from the tunnel addresses of its hosts, and the
// output filter drops it leaving by any other interface; without one, the output chain goes.
func TestTunnelRules(t *testing.T) {
	a := netip.MustParseAddr
	plain := NetworkState{Network: Network{Name: "p", VNI: 100}, VTEPs: []netip.Addr{a("192.168.77.2")}}
	enc := NetworkState{Network: Network{Name: "e", VNI: 200, Encrypted: true}, VTEPs: []netip.Addr{a("100.127.77.2")}}
	tun := tunnelEnds{name: "ovwg0", addr: a("100.127.77.1")}
	chain := func(ts []iptables.Table, table, name string) iptables.Chain {
		for _, tb := range ts {
			for _, c := range tb.Chains {
				if tb.Name == table && c.Name == name {
					return c
				}
			}
		}
		t.Fatalf("no chain %s in table %s", name, table)
		return iptables.Chain{}
	}
	nets := []NetworkState{plain, enc}
	ts := withTunnel(wantedTables(nets, a("192.168.77.1"), "eth0", nil, 4789, nil, true), nets, tun, 4789, true)
	in := chain(ts, "filter", ChainInput).Rules
	vni := strings.Join(vniMatch(200), " ")
	if want := "! -i ovwg0 " + vni + " -j DROP"; string(in[0]) != want {
		t.Errorf("first rule of %s = %q; want %q (before any accept)", ChainInput, in[0], want)
	}
	accept := "-s 100.127.77.2/32 -d 100.127.77.1/32 -i ovwg0 " + vni + " -j ACCEPT"
	if !slices.Contains(in, iptables.Rule(accept)) {
		t.Errorf("%s lacks %q:\n%v", ChainInput, accept, in)
	}
	for _, r := range in {
		if strings.Contains(string(r), "-i eth0") && strings.Contains(string(r), "=0xc8") {
			t.Errorf("%s accepts the encrypted VNI from the underlay: %q", ChainInput, r)
		}
	}
	out := chain(ts, "filter", ChainOutput)
	if out.Absent || len(out.Rules) != 1 || string(out.Rules[0]) != "! -o ovwg0 "+vni+" -j DROP" || out.Jumps[0].From != "OUTPUT" {
		t.Errorf("%s = %+v; want one DROP of VNI 200 not leaving by ovwg0, jumped from OUTPUT", ChainOutput, out)
	}
	guard := chain(ts, "raw", ChainRawGuard).Rules
	if string(guard[1]) != "-i ovwg0 -j ACCEPT" || !strings.HasPrefix(string(guard[2]), "! -i eth0") {
		t.Errorf("%s lets the tunnel's VXLAN in before dropping what is not from the underlay? %v", ChainRawGuard, guard)
	}

	ts = withTunnel(wantedTables([]NetworkState{plain}, a("192.168.77.1"), "eth0", nil, 4789, nil, true), []NetworkState{plain}, tun, 4789, true)
	if !chain(ts, "filter", ChainOutput).Absent {
		t.Errorf("%s is kept without encrypted networks", ChainOutput)
	}
}

// TestEncryptedWithoutTunnel: a host with no tunnel leaves an encrypted network out (a problem of
// kind network), never sets it up in clear.
func TestEncryptedWithoutTunnel(t *testing.T) {
	d := &Driver{cfg: Config{LocalIP: netip.MustParseAddr("192.168.77.1")}}
	s := State{Networks: []NetworkState{{Network: Network{Name: "e", VNI: 200, Subnet: netip.MustParsePrefix("10.9.0.0/24"), Gateway: netip.MustParseAddr("10.9.0.1"), Encrypted: true}}}}
	out, probs := d.withoutLocalPeers(s).Sanitize()
	if len(out.Networks) != 0 || len(probs) != 1 || probs[0].Kind != KindNetwork {
		t.Fatalf("without a tunnel: networks %+v, problems %+v; want the encrypted network left out", out.Networks, probs)
	}
}
