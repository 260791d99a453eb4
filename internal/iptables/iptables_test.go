package iptables_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/testutil"
)

const (
	chain = "OV-TEST"   // filter, FORWARD jumps here
	other = "OV-TEST-2" // filter, chain jumps here
	nat   = "OV-TEST-NAT"
)

// counting counts Restore calls, so that the suite sees "nothing to do" with any Client.
type counting struct {
	iptables.Client
	restores int
}

func (c *counting) Restore(table string, lines []string) error {
	c.restores++
	return c.Client.Restore(table, lines)
}

// foreign are rules of other programs in the built-in chains (as Docker and admins put there): Sync
// must never touch them.
var foreign = map[string][]string{
	"filter": {"-A FORWARD -o lo -j ACCEPT", "-A FORWARD -i ovt9 -m comment --comment admin -j DROP"},
	"nat":    {"-A POSTROUTING -o lo -j RETURN"},
}

// legacy is what the version before comments left: untagged jumps and untagged rules in ov's chain.
var legacy = map[string][]string{
	"filter": {":" + chain + " - [0:0]", "-A " + chain + " -i ovt0 -o ovt0 -j ACCEPT", "-I FORWARD 1 -j " + chain},
	"nat": {":" + nat + " - [0:0]", "-A " + nat + " -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80",
		"-I PREROUTING 1 -m addrtype --dst-type LOCAL -j " + nat, "-I OUTPUT 1 -m addrtype --dst-type LOCAL -j " + nat},
}

func tables(fwd, fwd2, natRules []iptables.Rule, absent bool) []iptables.Table {
	local := []string{"-m", "addrtype", "--dst-type", "LOCAL"}
	return []iptables.Table{
		{Name: "filter", Chains: []iptables.Chain{
			{Name: other, Rules: fwd2, Absent: absent},
			{Name: chain, Rules: fwd, Jumps: []iptables.Jump{{From: "FORWARD"}}, Absent: absent},
		}},
		{Name: "nat", Chains: []iptables.Chain{
			{Name: nat, Rules: natRules, Jumps: []iptables.Jump{{From: "PREROUTING", Match: local}, {From: "OUTPUT", Match: local}}, Absent: absent},
		}},
	}
}

// nonCanonical is a rule iptables prints in another form (the fake keeps it as written).
const nonCanonical = "-d 10.99.0.2 -p tcp --dport 80 ! -i ovt0 -o ovt0 -j ACCEPT"

var steps = []struct {
	name   string
	tables []iptables.Table
}{
	{"create", tables([]iptables.Rule{
		"-o ovt0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		"-j " + other,
		"-i ovt0 ! -o ovt0 -j ACCEPT",
		"-i ovt0 -o ovt0 -j ACCEPT",
	}, []iptables.Rule{"-o ovt0 -j DROP"}, []iptables.Rule{"-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80"}, false)},
	{"insert in the middle, not canonical", tables([]iptables.Rule{
		"-o ovt0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		"-j " + other,
		nonCanonical,
		"-i ovt0 ! -o ovt0 -j ACCEPT",
		"-i ovt0 -o ovt0 -j ACCEPT",
	}, []iptables.Rule{"-o ovt0 -j DROP"}, []iptables.Rule{"-p udp -m udp --dport 53 -j DNAT --to-destination 10.99.0.3:53", "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80"}, false)},
	{"replace, remove and reorder", tables([]iptables.Rule{
		"-i ovt0 -o ovt0 -j ACCEPT",
		"-d 10.99.0.3/32 ! -i ovt0 -o ovt0 -p udp -m udp --dport 53 -j ACCEPT",
		"-j " + other,
	}, nil, nil, false)},
	{"empty chains", tables(nil, nil, nil, false)},
	{"gone", tables(nil, nil, nil, true)},
}

// conformance is the behaviour the network drivers rely on, run against a Client: from a table holding
// other programs' rules and what the previous version of ov left (untagged), Sync converges each step
// to exactly the wanted chains with one tagged jump each, leaves the other rules alone, and a second
// Sync writes nothing. It returns the tables after each step, for comparing implementations.
func conformance(t *testing.T, c iptables.Client) []map[string][]iptables.Rule {
	for _, table := range []string{"filter", "nat"} {
		if err := c.Restore(table, slices.Concat(foreign[table], legacy[table])); err != nil {
			t.Fatal(err)
		}
	}
	cc := &counting{Client: c}
	var snaps []map[string][]iptables.Rule
	for _, s := range steps {
		for _, tab := range s.tables {
			if _, err := iptables.Sync(cc, tab); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			got := save(t, c, tab.Name)
			for _, ch := range tab.Chains {
				checkChain(t, s.name, got, ch)
			}
			if diff := cmp.Diff(foreignOf(foreign[tab.Name]), foreignOf(rendered(got))); diff != "" {
				t.Errorf("%s: other programs' rules in %s changed (-want +got):\n%s", s.name, tab.Name, diff)
			}
			before := cc.restores
			if n, err := iptables.Sync(cc, tab); err != nil || n != 0 || cc.restores != before {
				t.Errorf("%s: second Sync of %s made %d edits, %d restores (%v); want none", s.name, tab.Name, n, cc.restores-before, err)
			}
			snaps = append(snaps, got)
		}
	}
	for _, table := range []string{"filter", "nat"} {
		var undo []string
		for _, l := range foreign[table] {
			undo = append(undo, strings.Replace(l, "-A ", "-D ", 1))
		}
		if err := c.Restore(table, undo); err != nil {
			t.Fatal(err)
		}
	}
	return snaps
}

// checkChain: ch holds exactly its tagged rules (or is gone), each jump to it is there once, tagged,
// and no untagged jump to it is left.
func checkChain(t *testing.T, step string, got map[string][]iptables.Rule, ch iptables.Chain) {
	t.Helper()
	rules, exists := got[ch.Name]
	if exists == ch.Absent {
		t.Errorf("%s: chain %s exists: %v; want %v", step, ch.Name, exists, !ch.Absent)
	}
	if !ch.Absent {
		var want []iptables.Rule
		for _, r := range ch.Rules {
			want = append(want, iptables.Tag(ch.Name, ch.Name, r))
		}
		if !canonical(ch.Rules) {
			want = nil // iptables prints these in its own form: compare the comments only
			for _, r := range rules {
				if !strings.Contains(string(r), `"ov:`+ch.Name+":") {
					t.Errorf("%s: rule %q in %s has no ov comment", step, r, ch.Name)
				}
			}
			if len(rules) != len(ch.Rules) {
				t.Errorf("%s: %s has %d rules; want %d", step, ch.Name, len(rules), len(ch.Rules))
			}
		} else if diff := cmp.Diff(want, rules, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: %s (-want +got):\n%s", step, ch.Name, diff)
		}
	}
	for _, j := range ch.Jumps {
		n := 0
		for _, r := range got[j.From] {
			if strings.HasSuffix(string(r), "-j "+ch.Name) {
				n++
				if !strings.Contains(string(r), `"ov:`+ch.Name+":") {
					t.Errorf("%s: untagged jump %q left in %s", step, r, j.From)
				}
			}
		}
		if want := map[bool]int{false: 1, true: 0}[ch.Absent]; n != want {
			t.Errorf("%s: %d jumps from %s to %s; want %d:\n%s", step, n, j.From, ch.Name, want, rendered(got))
		}
	}
}

func canonical(rules []iptables.Rule) bool {
	for _, r := range rules {
		if strings.Contains(string(r), "--dport") && !strings.Contains(string(r), "-m tcp") && !strings.Contains(string(r), "-m udp") {
			return false
		}
	}
	return true
}

func save(t *testing.T, c iptables.Client, table string) map[string][]iptables.Rule {
	t.Helper()
	got, err := c.Save(table)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// rendered lists a table as "-A CHAIN RULE" lines, chains sorted.
func rendered(tab map[string][]iptables.Rule) []string {
	var out []string
	for c, rules := range tab {
		for _, r := range rules {
			out = append(out, "-A "+c+" "+string(r))
		}
	}
	slices.Sort(out)
	return out
}

func foreignOf(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !strings.Contains(l, "OV-TEST") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func TestConformanceFake(t *testing.T) {
	f := iptables.NewFake()
	conformance(t, f)
	if s := f.String(); s != "" {
		t.Errorf("fake not empty after the suite:\n%s", s)
	}
}

// TestConformanceReal runs the suite against iptables-save and iptables-restore inside a network
// namespace the test made (privileged), and the same suite against the Fake: after every step both
// must hold the same tables.
func TestConformanceReal(t *testing.T) {
	if _, inside := testutil.InsideNetns(t); !inside {
		return
	}
	c, err := iptables.NewTables()
	if err != nil {
		t.Fatal(err)
	}
	before := dump(t)
	real := conformance(t, c)
	fake := conformance(t, iptables.NewFake())
	// Only the comment of nonCanonical is the same in both.
	f := strings.Fields(string(iptables.Tag(chain, chain, nonCanonical)))
	comment := f[slices.Index(f, "--comment")+1]
	byComment := cmp.Transformer("comment", func(r iptables.Rule) string {
		if strings.Contains(string(r), comment) {
			return comment
		}
		return string(r)
	})
	if diff := cmp.Diff(fake, real, cmpopts.EquateEmpty(), byComment); diff != "" {
		t.Errorf("tables after each step (-fake +real):\n%s", diff)
	}
	if diff := cmp.Diff(before, dump(t)); diff != "" {
		t.Errorf("rules changed by the suite (-before +after):\n%s", diff)
	}
}

// dump lists the filter and nat tables (policies, chains, rules).
func dump(t *testing.T) string {
	return testutil.Run(t, "iptables", "-t", "filter", "-S") + testutil.Run(t, "iptables", "-t", "nat", "-S")
}

// TestFakeRender: the Fake renders whole tables, comments included, and refuses what iptables
// refuses.
func TestFakeRender(t *testing.T) {
	f := iptables.NewFake()
	f.SetPolicy("filter", "FORWARD", "DROP")
	tab := iptables.Table{Name: "nat", Chains: []iptables.Chain{{Name: "OV-NAT",
		Rules: []iptables.Rule{"-s 10.0.0.0/24 ! -o b -j MASQUERADE"}, Jumps: []iptables.Jump{{From: "POSTROUTING"}}}}}
	if n, err := iptables.Sync(f, tab); err != nil || n != 3 {
		t.Fatalf("Sync: %d edits, %v; want 3 (chain, rule, jump)", n, err)
	}
	want := `*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:OV-NAT -
-A POSTROUTING -m comment --comment "ov:OV-NAT:6ae9d672ee32" -j OV-NAT
-A OV-NAT -s 10.0.0.0/24 ! -o b -m comment --comment "ov:OV-NAT:018e2a1cef9b" -j MASQUERADE
COMMIT
`
	if diff := cmp.Diff(want, f.String()); diff != "" {
		t.Errorf("render (-want +got):\n%s", diff)
	}
	for _, l := range []string{"-X OV-NAT", "-X POSTROUTING", "-A OV-NAT -j OV-MISSING", "-D OV-NAT 2"} {
		if err := f.Restore("nat", []string{l}); err == nil {
			t.Errorf("restore of %q succeeded; iptables refuses it", l)
		}
	}
}

// TestJumpLeftWhereItIs: a jump that another program moved down (by inserting its own rule above) is
// not moved back, and a rule of another program that looks like ov's but has no comment is kept.
func TestJumpLeftWhereItIs(t *testing.T) {
	f := iptables.NewFake()
	tab := iptables.Table{Name: "filter", Chains: []iptables.Chain{{Name: chain, Rules: []iptables.Rule{"-j ACCEPT"}, Jumps: []iptables.Jump{{From: "FORWARD"}}}}}
	if _, err := iptables.Sync(f, tab); err != nil {
		t.Fatal(err)
	}
	if err := f.Insert("filter", "FORWARD", 1, "-i", "docker0", "-j", chain); err != nil {
		t.Fatal(err)
	}
	before := f.String()
	if n, err := iptables.Sync(f, tab); err != nil || n != 0 || f.String() != before {
		t.Errorf("Sync made %d edits (%v); want none:\n%s", n, err, f.String())
	}
}
