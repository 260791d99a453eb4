package bridge

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/iptables"
)

// TestRulesConvergeInAnyOrder applies the rule sets of several states to one set of chains in random
// orders: each time the chains must render exactly as when the state is applied to empty chains.
func TestRulesConvergeInAnyOrder(t *testing.T) {
	def := &Network{Name: "bridge", Bridge: "ov0", Subnet: netip.MustParsePrefix("172.17.0.0/16")}
	front := &Network{Name: "front", Bridge: "ov-front", Subnet: netip.MustParsePrefix("10.1.0.0/24")}
	secret := &Network{Name: "secret", Bridge: "ov-secret", Subnet: netip.MustParsePrefix("10.2.0.0/24"), Internal: true}
	ep := func(n *Network, c, ip string, ports ...string) *Endpoint {
		pm, err := api.ParsePortSpecs(ports)
		if err != nil {
			t.Fatal(err)
		}
		return &Endpoint{Network: n.Name, Container: c, Address: netip.PrefixFrom(netip.MustParseAddr(ip), n.Subnet.Bits()), Ports: pm}
	}
	states := []struct {
		name string
		nets []*Network
		eps  []*Endpoint
	}{
		{"default only", []*Network{def}, nil},
		{"published port", []*Network{def}, []*Endpoint{ep(def, "a", "172.17.0.2", "8080:80")}},
		{"two ports, two networks", []*Network{def, front}, []*Endpoint{
			ep(def, "a", "172.17.0.2", "8080:80", "53:53/udp"), ep(front, "b", "10.1.0.2", "127.0.0.1:9000:9000")}},
		{"internal added", []*Network{def, front, secret}, []*Endpoint{ep(front, "b", "10.1.0.2"), ep(secret, "c", "10.2.0.2")}},
		{"port moved", []*Network{def, front}, []*Endpoint{ep(front, "b", "10.1.0.9", "8080:80")}},
	}
	want := make([]string, len(states))
	for i, s := range states {
		f := iptables.NewFake()
		f.SetPolicy("filter", "FORWARD", "DROP")
		if err := rulesFor(s.nets, s.eps, []string{"ovgw+"}).apply(f); err != nil {
			t.Fatal(err)
		}
		want[i] = f.String()
	}
	f := iptables.NewFake()
	f.SetPolicy("filter", "FORWARD", "DROP")
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 5; round++ {
		for _, i := range rng.Perm(len(states)) {
			if err := rulesFor(states[i].nets, states[i].eps, []string{"ovgw+"}).apply(f); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want[i], f.String()); diff != "" {
				t.Fatalf("round %d, state %q (-want +got):\n%s", round, states[i].name, diff)
			}
		}
	}
	// Upgrade from the version that wrote no comments: no rule or jump is left twice.
	last := states[len(states)-1]
	f.DropComments()
	if err := rulesFor(last.nets, last.eps, []string{"ovgw+"}).apply(f); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[len(states)-1], f.String()); diff != "" {
		t.Fatalf("after upgrade from untagged rules (-want +got):\n%s", diff)
	}
	if err := removeAll(f); err != nil {
		t.Fatal(err)
	}
	if s := f.String(); s != "" {
		t.Errorf("after removeAll:\n%s", s)
	}
}
