package iptables_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/testutil"
)

// conformance runs the behaviour the network drivers rely on against a Client: SyncChain converges to
// exactly the wanted rules from any start, twice changes nothing, EnsureJump adds the jump once at the top,
// and RemoveJump + DeleteChain leave nothing behind.
func conformance(t *testing.T, c iptables.Client) {
	const table, chain = "filter", "OV-TEST"
	steps := []struct {
		name    string
		rules   []iptables.Rule
		changes int // iptables edits SyncChain may make for this step
	}{
		{"create", []iptables.Rule{
			"-o ovt0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			"-i ovt0 ! -o ovt0 -j ACCEPT",
			"-i ovt0 -o ovt0 -j ACCEPT",
		}, 3},
		{"insert in the middle", []iptables.Rule{
			"-o ovt0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			"-d 10.99.0.2/32 ! -i ovt0 -o ovt0 -p tcp -m tcp --dport 80 -j ACCEPT",
			"-i ovt0 ! -o ovt0 -j ACCEPT",
			"-i ovt0 -o ovt0 -j ACCEPT",
		}, 1},
		{"remove in the middle", []iptables.Rule{
			"-o ovt0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			"-i ovt0 ! -o ovt0 -j ACCEPT",
			"-i ovt0 -o ovt0 -j ACCEPT",
		}, 1},
		{"replace one", []iptables.Rule{
			"-o ovt0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			"-d 10.99.0.3/32 ! -i ovt0 -o ovt0 -p udp -m udp --dport 53 -j ACCEPT",
			"-i ovt0 -o ovt0 -j ACCEPT",
		}, 2},
		{"remove and reorder", []iptables.Rule{
			"-i ovt0 -o ovt0 -j ACCEPT",
			"-o ovt0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		}, 3},
		{"empty", nil, 2},
	}
	for _, s := range steps {
		n, err := iptables.SyncChain(c, table, chain, s.rules)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if n > s.changes {
			t.Errorf("%s: SyncChain made %d edits; want at most %d", s.name, n, s.changes)
		}
		got, err := iptables.Rules(c, table, chain)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s.rules, got); diff != "" {
			t.Errorf("%s: rules (-want +got):\n%s", s.name, diff)
		}
		n, err = iptables.SyncChain(c, table, chain, s.rules)
		if err != nil || n != 0 {
			t.Errorf("%s: second SyncChain made %d changes (err %v); want 0: rules are not in canonical form", s.name, n, err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := iptables.EnsureJump(c, table, "FORWARD", chain); err != nil {
			t.Fatal(err)
		}
	}
	lines, err := c.List(table, "FORWARD")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.Join(lines, "\n"), "-j "+chain); n != 1 || lines[1] != "-A FORWARD -j "+chain {
		t.Errorf("after EnsureJump twice FORWARD is %q; want one jump to %s, first", lines, chain)
	}
	if err := iptables.RemoveJump(c, table, "FORWARD", chain); err != nil {
		t.Fatal(err)
	}
	if err := iptables.DeleteChain(c, table, chain); err != nil {
		t.Fatal(err)
	}
	if err := iptables.DeleteChain(c, table, chain); err != nil {
		t.Errorf("deleting a missing chain: %v; want no error", err)
	}
	if ok, err := c.ChainExists(table, chain); err != nil || ok {
		t.Errorf("chain exists after DeleteChain: %v %v", ok, err)
	}
	if r, ok := c.(iptables.Restorer); ok {
		restoreConformance(t, c, r, table, chain)
	}
}

// restoreConformance: SyncTable converges two chains (one jumping to the other, both created by the
// first call) and a jump from a built-in chain to exactly the wanted rules from any start, writes them
// in the canonical form SyncChain compares with, and changes nothing (no Restore) when all matches.
func restoreConformance(t *testing.T, c iptables.Client, r iptables.Restorer, table, chain string) {
	t.Helper()
	const other = "OV-TEST-2"
	jumps := []iptables.Jump{{From: "FORWARD", To: chain}}
	steps := []struct {
		name string
		sets []iptables.ChainRules
	}{
		{"create both", []iptables.ChainRules{
			{Chain: other, Rules: []iptables.Rule{"-o ovt0 -j DROP"}},
			{Chain: chain, Rules: []iptables.Rule{
				"-j " + other,
				"-d 10.99.0.2/32 ! -i ovt0 -o ovt0 -p tcp -m tcp --dport 80 -j ACCEPT",
				"-i ovt0 ! -o ovt0 -j ACCEPT",
			}},
		}},
		{"insert, remove and reorder", []iptables.ChainRules{
			{Chain: other, Rules: nil},
			{Chain: chain, Rules: []iptables.Rule{
				"-i ovt0 ! -o ovt0 -j ACCEPT",
				"-j " + other,
				"-o ovt0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			}},
		}},
		{"empty", []iptables.ChainRules{{Chain: other}, {Chain: chain}}},
	}
	for _, s := range steps {
		if _, err := iptables.SyncTable(r, table, s.sets, jumps); err != nil {
			t.Fatalf("SyncTable, %s: %v", s.name, err)
		}
		for _, set := range s.sets {
			got, err := iptables.Rules(c, table, set.Chain)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(set.Rules, got); diff != "" {
				t.Errorf("SyncTable, %s: %s (-want +got):\n%s", s.name, set.Chain, diff)
			}
			if n, err := iptables.SyncChain(c, table, set.Chain, set.Rules); err != nil || n != 0 {
				t.Errorf("SyncTable, %s: SyncChain after it made %d changes (%v); want 0", s.name, n, err)
			}
		}
		if n, err := iptables.SyncTable(r, table, s.sets, jumps); err != nil || n != 0 {
			t.Errorf("SyncTable, %s: second call made %d edits (%v); want 0", s.name, n, err)
		}
		lines, err := c.List(table, "FORWARD")
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(strings.Join(lines, "\n"), "-j "+chain); n != 1 {
			t.Errorf("SyncTable, %s: FORWARD is %q; want one jump to %s", s.name, lines, chain)
		}
	}
	if err := iptables.RemoveJump(c, table, "FORWARD", chain); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{chain, other} {
		if err := iptables.DeleteChain(c, table, ch); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConformanceFake(t *testing.T) {
	f := iptables.NewFake()
	conformance(t, f)
	if s := f.String(); s != "" {
		t.Errorf("fake not empty after the suite:\n%s", s)
	}
}

// TestConformanceReal runs the suite against the iptables binary inside a network namespace the test
// made (privileged).
func TestConformanceReal(t *testing.T) {
	if _, inside := testutil.InsideNetns(t); !inside {
		return
	}
	c, err := iptables.NewTables()
	if err != nil {
		t.Fatal(err)
	}
	before := dump(t)
	conformance(t, c)
	if diff := cmp.Diff(before, dump(t)); diff != "" {
		t.Errorf("rules changed by the suite (-before +after):\n%s", diff)
	}
}

// dump lists the filter and nat tables (policies, chains, rules).
func dump(t *testing.T) string {
	return testutil.Run(t, "iptables", "-t", "filter", "-S") + testutil.Run(t, "iptables", "-t", "nat", "-S")
}

func TestFakeRender(t *testing.T) {
	f := iptables.NewFake()
	f.SetPolicy("filter", "FORWARD", "DROP")
	if _, err := iptables.SyncChain(f, "nat", "OV-NAT", []iptables.Rule{"-s 10.0.0.0/24 ! -o b -j MASQUERADE"}); err != nil {
		t.Fatal(err)
	}
	if err := iptables.EnsureJump(f, "nat", "POSTROUTING", "OV-NAT"); err != nil {
		t.Fatal(err)
	}
	want := `*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:OV-NAT -
-A POSTROUTING -j OV-NAT
-A OV-NAT -s 10.0.0.0/24 ! -o b -j MASQUERADE
COMMIT
`
	if diff := cmp.Diff(want, f.String()); diff != "" {
		t.Errorf("render (-want +got):\n%s", diff)
	}
	if err := iptables.DeleteChain(f, "nat", "OV-NAT"); err == nil {
		t.Error("deleting a chain that POSTROUTING jumps to succeeded; iptables refuses it")
	}
}
