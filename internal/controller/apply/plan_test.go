package apply

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

func mustParse(t *testing.T, text string) *File {
	t.Helper()
	f, err := Parse("c.yaml", []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

func managedNet(name, subnet string, vni uint32, labels ...string) api.Network {
	n := api.Network{Name: name, Driver: api.DriverOverlay, Subnet: subnet, VNI: vni, Revision: 7,
		Labels: map[string]string{ManagedLabel: "true"}}
	for i := 0; i+1 < len(labels); i += 2 {
		n.Labels[labels[i]] = labels[i+1]
	}
	return n
}

// TestPlan checks the plan text for a file against a given cluster state.
func TestPlan(t *testing.T) {
	manual := api.Network{Name: "manual", Driver: api.DriverOverlay, Subnet: "10.99.0.0/24", VNI: 99}
	for _, tc := range []struct {
		name  string
		cur   State
		file  string
		prune bool
		want  string
	}{
		{
			name: "empty cluster",
			file: header + "hosts:\n  - {name: h1, address: 192.168.77.11, labels: {zone: a}}\n" +
				"networks:\n  - {name: front, subnet: 10.20.0.0/24, gateway: 10.20.0.1, labels: {tier: web}}\n" +
				"  - {name: back, subnet: 10.30.0.0/24, internal: true}\n  - {name: auto}\n",
			want: "! host h1 not registered yet (192.168.77.11, labels zone=a): its agent registers it when it joins; apply again then to set its labels\n" +
				"+ network front (overlay 10.20.0.0/24, gateway 10.20.0.1, labels tier=web)\n" +
				"+ network back (overlay 10.30.0.0/24, internal)\n" +
				"+ network auto (overlay, subnet chosen by the controller)\n" +
				"Plan: 3 to create, 0 to change, 0 to delete, 0 unchanged.\n",
		},
		{
			name: "networks that name their subnet and VNI are created first",
			file: header + "networks:\n  - {name: a}\n  - {name: b, subnet: 10.128.0.0/24}\n  - {name: c, vni: 4096}\n" +
				"  - {name: d, subnet: 10.128.1.0/24, vni: 4097}\n  - {name: e, subnet: 10.128.2.0/24}\n",
			want: "+ network d (overlay 10.128.1.0/24, vni 4097)\n" +
				"+ network b (overlay 10.128.0.0/24)\n" +
				"+ network c (overlay, subnet chosen by the controller, vni 4096)\n" +
				"+ network e (overlay 10.128.2.0/24)\n" +
				"+ network a (overlay, subnet chosen by the controller)\n" +
				"Plan: 5 to create, 0 to change, 0 to delete, 0 unchanged.\n",
		},
		{
			name: "matches",
			cur: State{
				Networks: []api.Network{managedNet("front", "10.20.0.0/24", 5, "tier", "web")},
				Hosts:    []api.Host{{Name: "h1", Address: "192.168.77.11", Labels: map[string]string{"zone": "a", "agent": "x"}}},
			},
			file: header + "hosts:\n  - {name: h1, address: 192.168.77.11, labels: {zone: a}}\n" +
				"networks:\n  - {name: front, labels: {tier: web}}\n",
			want: "= host h1 unchanged\n= network front unchanged\nNo changes: the cluster already matches c.yaml.\n",
		},
		{
			name: "labels and internal change in place",
			cur: State{
				Networks: []api.Network{managedNet("front", "10.20.0.0/24", 5, "tier", "web", "old", "1")},
				Hosts:    []api.Host{{Name: "h1", Address: "192.168.77.11", Labels: map[string]string{"zone": "a"}}},
			},
			file: header + "hosts:\n  - {name: h1, address: 192.168.77.11, labels: {zone: b, rack: \"7\"}}\n" +
				"networks:\n  - {name: front, subnet: 10.20.0.0/24, internal: true, labels: {tier: api, team: x}}\n",
			want: "~ host h1: labels +rack=7 zone=a->b\n" +
				"~ network front: internal false -> true; labels -old +team=x tier=web->api\n" +
				"Plan: 0 to create, 2 to change, 0 to delete, 0 unchanged.\n",
		},
		{
			name: "adopt a network created by hand",
			cur:  State{Networks: []api.Network{manual}},
			file: header + "networks:\n  - {name: manual, subnet: 10.99.0.0/24}\n",
			want: "~ network manual: adopted by apply (label ov.apply/managed=true)\n" +
				"Plan: 0 to create, 1 to change, 0 to delete, 0 unchanged.\n",
		},
		{
			name: "managed network left out without prune",
			cur:  State{Networks: []api.Network{managedNet("old", "10.40.0.0/24", 6), manual}},
			file: header + "networks: []\n",
			want: "! network old kept: created by apply but no longer in the file; apply with --prune to delete it\n" +
				"No changes: the cluster already matches c.yaml.\n",
		},
		{
			name:  "prune deletes only managed networks",
			cur:   State{Networks: []api.Network{managedNet("old", "10.40.0.0/24", 6), manual, managedNet("front", "10.20.0.0/24", 5)}},
			file:  header + "networks:\n  - name: front\n",
			prune: true,
			want: "! network manual kept: not created by apply (no label ov.apply/managed=true), so --prune leaves it\n" +
				"- network old (overlay 10.40.0.0/24, vni 6)\n" +
				"= network front unchanged\n" +
				"Plan: 0 to create, 0 to change, 1 to delete, 1 unchanged.\n",
		},
		{
			name:  "prune frees the subnet of a renamed network",
			cur:   State{Networks: []api.Network{managedNet("old", "10.40.0.0/24", 6)}},
			file:  header + "networks:\n  - {name: new, subnet: 10.40.0.0/24, vni: 6}\n",
			prune: true,
			want: "- network old (overlay 10.40.0.0/24, vni 6)\n" +
				"+ network new (overlay 10.40.0.0/24, vni 6)\n" +
				"Plan: 1 to create, 0 to change, 1 to delete, 0 unchanged.\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPlan(mustParse(t, tc.file), tc.cur, Options{Prune: tc.prune})
			if err != nil {
				t.Fatalf("NewPlan: %v", err)
			}
			if d := cmp.Diff(tc.want, p.String()); d != "" {
				t.Errorf("plan (-want +got):\n%s", d)
			}
		})
	}
}

// TestPlanConflicts checks that a file that clashes with the cluster gives no plan and names the line.
func TestPlanConflicts(t *testing.T) {
	cur := State{
		Networks: []api.Network{
			managedNet("front", "10.20.0.0/24", 5),
			managedNet("old", "10.40.0.0/16", 6),
			{Name: "manual", Driver: api.DriverOverlay, Subnet: "10.99.0.0/24", VNI: 99},
		},
		Hosts: []api.Host{{Name: "h1", Address: "192.168.77.11"}},
	}
	for _, tc := range []struct {
		name  string
		file  string
		prune bool
		want  string
	}{
		{"subnet change", header + "networks:\n  - name: front\n    subnet: 10.21.0.0/24\n",
			false, `c.yaml:5: network "front": subnet cannot change in place (the cluster has 10.20.0.0/24, the file says 10.21.0.0/24); delete and re-create it (ovctl network rm front, then apply), or remove it from the file and apply with --prune first`},
		{"vni change", header + "networks:\n  - name: front\n    vni: 9\n",
			false, `c.yaml:5: network "front": vni cannot change in place (the cluster has 5, the file says 9); delete and re-create it (ovctl network rm front, then apply), or remove it from the file and apply with --prune first`},
		{"mtu change", header + "networks:\n  - name: front\n    mtu: 1400\n",
			false, `c.yaml:5: network "front": mtu cannot change in place (the cluster has derived, the file says 1400); delete and re-create it (ovctl network rm front, then apply), or remove it from the file and apply with --prune first`},
		{"overlaps a managed network not in the file", header + "networks:\n  - name: front\n  - name: new\n    subnet: 10.40.1.0/24\n",
			false, `c.yaml:6: network "new": subnet 10.40.1.0/24 overlaps the existing network "old" (10.40.0.0/16), which the file does not name; choose another subnet, or remove "old" first (ovctl network rm old), or apply with --prune to delete it`},
		{"overlaps an unmanaged network even with prune", header + "networks:\n  - name: front\n  - name: new\n    subnet: 10.99.0.0/16\n",
			true, `c.yaml:6: network "new": subnet 10.99.0.0/16 overlaps the existing network "manual" (10.99.0.0/24), which the file does not name; choose another subnet, or remove "manual" first (ovctl network rm manual); it was not created by apply, so --prune leaves it`},
		{"overlaps the current subnet of a named network", header + "networks:\n  - name: front\n  - name: new\n    subnet: 10.20.0.0/23\n",
			true, `c.yaml:6: network "new": subnet 10.20.0.0/23 overlaps network "front", which has 10.20.0.0/24 in the cluster; choose another subnet`},
		{"vni of a named network", header + "networks:\n  - name: front\n  - name: new\n    vni: 5\n",
			false, `c.yaml:6: network "new": VNI 5 is the VNI network "front" has in the cluster; choose another vni`},
		{"vni taken", header + "networks:\n  - name: new\n    vni: 99\n",
			false, `c.yaml:5: network "new": VNI 99 is the VNI of the existing network "manual", which the file does not name; choose another vni, or remove "manual" first (ovctl network rm manual); it was not created by apply, so --prune leaves it`},
		{"host address moved", header + "hosts:\n  - name: h1\n    address: 192.168.77.21\n",
			false, `c.yaml:5: host "h1" is registered with address 192.168.77.11 but the file says 192.168.77.21; an agent registers its own address, so correct the file`},
		{"host address taken", header + "hosts:\n  - name: h2\n    address: 192.168.77.11\n",
			false, `c.yaml:5: host "h2": address 192.168.77.11 is already registered by host "h1"; each host needs its own underlay address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPlan(mustParse(t, tc.file), cur, Options{Prune: tc.prune})
			if err == nil {
				t.Fatalf("NewPlan accepted the file:\n%s", p)
			}
			if !errors.Is(err, errdefs.ErrConflict) {
				t.Errorf("error is not ErrConflict: %v", err)
			}
			if d := cmp.Diff(tc.want, err.Error()); d != "" {
				t.Errorf("error (-want +got):\n%s", d)
			}
		})
	}
}

func run(t *testing.T, c Cluster, text string, opts Options) (string, error) {
	t.Helper()
	var out bytes.Buffer
	f, err := Parse("cluster.yaml", []byte(text))
	if err != nil {
		return "", err
	}
	err = Run(context.Background(), c, f, opts, &out)
	return out.String(), err
}

// TestRunTwice applies the example file to a new cluster, then again: the second run changes nothing.
func TestRunTwice(t *testing.T) {
	data, err := os.ReadFile("../../../deploy/examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := newFake()
	// The agents of host1 and host2 have joined (registering themselves, without labels); host3's has not.
	for _, h := range []api.Host{{Name: "host1", Address: "192.168.77.11"}, {Name: "host2", Address: "192.168.77.12"}} {
		if _, err := c.RegisterHost(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
	out, err := run(t, c, string(data), Options{})
	if err != nil {
		t.Fatalf("first apply: %v\n%s", err, out)
	}
	want := "~ host host1: labels +zone=a\n" +
		"~ host host2: labels +zone=a\n" +
		"! host host3 not registered yet (192.168.77.13, labels zone=b): its agent registers it when it joins; apply again then to set its labels\n" +
		"+ network front (overlay 10.20.0.0/24, gateway 10.20.0.1, labels tier=web)\n" +
		"+ network back (overlay 10.30.0.0/24, internal, labels tier=db)\n" +
		"Plan: 2 to create, 2 to change, 0 to delete, 0 unchanged.\n" +
		"Applied: 2 created, 2 changed, 0 deleted.\n"
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("first apply (-want +got):\n%s", d)
	}
	state := c.dump()
	wantState := "host host1 192.168.77.11 map[zone:a]\nhost host2 192.168.77.12 map[zone:a]\n" +
		"network back overlay 10.30.0.0/24 gw=10.30.0.1 vni=4098 mtu=0 internal=true map[ov.apply/managed:true tier:db]\n" +
		"network front overlay 10.20.0.0/24 gw=10.20.0.1 vni=4097 mtu=0 internal=false map[ov.apply/managed:true tier:web]"
	if d := cmp.Diff(wantState, state); d != "" {
		t.Errorf("cluster after the first apply (-want +got):\n%s", d)
	}

	writes := c.writes
	out, err = run(t, c, string(data), Options{})
	if err != nil {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	want = "= host host1 unchanged\n= host host2 unchanged\n" +
		"! host host3 not registered yet (192.168.77.13, labels zone=b): its agent registers it when it joins; apply again then to set its labels\n" +
		"= network front unchanged\n= network back unchanged\n" +
		"No changes: the cluster already matches cluster.yaml.\n"
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("second apply (-want +got):\n%s", d)
	}
	if c.writes != writes || c.dump() != state {
		t.Errorf("second apply wrote %d times; cluster now:\n%s", c.writes-writes, c.dump())
	}
}

func TestRunDryRun(t *testing.T) {
	c := newFake()
	if _, err := c.CreateNetwork(context.Background(), managedNet("old", "10.40.0.0/24", 0)); err != nil {
		t.Fatal(err)
	}
	before := c.dump()
	out, err := run(t, c, header+"networks:\n  - {name: front, subnet: 10.20.0.0/24}\n", Options{DryRun: true, Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "- network old (overlay 10.40.0.0/24, gateway 10.40.0.1, vni 4097)\n" +
		"+ network front (overlay 10.20.0.0/24)\n" +
		"Plan: 1 to create, 0 to change, 1 to delete, 0 unchanged.\n" +
		"Dry run: nothing was changed.\n"
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("dry run (-want +got):\n%s", d)
	}
	if got := c.dump(); got != before {
		t.Errorf("dry run changed the cluster:\n%s", got)
	}
}

func TestRunPrune(t *testing.T) {
	c := newFake()
	both := header + "networks:\n  - {name: front, subnet: 10.20.0.0/24}\n  - {name: back, subnet: 10.30.0.0/24}\n"
	if out, err := run(t, c, both, Options{}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := c.CreateNetwork(context.Background(), api.Network{Name: "manual", Driver: api.DriverOverlay, Subnet: "10.99.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	onlyFront := header + "networks:\n  - {name: front, subnet: 10.20.0.0/24}\n"
	out, err := run(t, c, onlyFront, Options{})
	if err != nil || !strings.Contains(out, "! network back kept") {
		t.Fatalf("without --prune: %v\n%s", err, out)
	}
	if !strings.Contains(c.dump(), "network back ") {
		t.Fatalf("back was deleted without --prune:\n%s", c.dump())
	}
	out, err = run(t, c, onlyFront, Options{Prune: true})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "- network back (overlay 10.30.0.0/24, gateway 10.30.0.1, vni 4098)\n" +
		"! network manual kept: not created by apply (no label ov.apply/managed=true), so --prune leaves it\n" +
		"= network front unchanged\n" +
		"Plan: 0 to create, 0 to change, 1 to delete, 1 unchanged.\n" +
		"Applied: 0 created, 0 changed, 1 deleted.\n"
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("prune (-want +got):\n%s", d)
	}
	got := c.dump()
	if strings.Contains(got, "network back ") || !strings.Contains(got, "network manual ") || !strings.Contains(got, "network front ") {
		t.Errorf("after prune:\n%s", got)
	}
}

// TestRunBadFileChangesNothing: a file whose last network clashes with the cluster must not create the
// networks before it.
func TestRunBadFileChangesNothing(t *testing.T) {
	c := newFake()
	if _, err := c.CreateNetwork(context.Background(), api.Network{Name: "manual", Driver: api.DriverOverlay, Subnet: "10.99.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	before := c.dump()
	out, err := run(t, c, header+"networks:\n  - {name: a, subnet: 10.1.0.0/24}\n  - {name: b, subnet: 10.99.0.0/25}\n", Options{Prune: true})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.HasPrefix(err.Error(), "cluster.yaml:5: network \"b\": subnet 10.99.0.0/25 overlaps") {
		t.Fatalf("got %v\n%s", err, out)
	}
	if out != "" || c.dump() != before {
		t.Errorf("a refused file printed %q and changed the cluster:\n%s", out, c.dump())
	}
}

// TestRunLostRace: another writer changes the cluster between the plan and the apply; the apply stops
// with a conflict that says what was done.
func TestRunLostRace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		race  func(c *fakeCluster)
		setup string
		file  string
		want  string
	}{
		{
			name: "network created meanwhile",
			race: func(c *fakeCluster) {
				_, _ = c.CreateNetwork(context.Background(), api.Network{Name: "back", Driver: api.DriverOverlay, Subnet: "10.50.0.0/24"})
			},
			file: header + "networks:\n  - {name: front, subnet: 10.20.0.0/24}\n  - {name: back, subnet: 10.30.0.0/24}\n",
			want: `apply cluster.yaml: change 2 of 2 failed (1 made before it; the cluster changed since the plan was made, or the change clashes with it; run ovctl apply again to see the new plan): + network back (overlay 10.30.0.0/24): network "back" exists: already exists`,
		},
		{
			name:  "network updated meanwhile",
			setup: header + "networks:\n  - {name: front, subnet: 10.20.0.0/24}\n",
			race: func(c *fakeCluster) {
				n := c.networks["front"]
				_, _ = c.UpdateNetwork(context.Background(), n)
			},
			file: header + "networks:\n  - {name: front, subnet: 10.20.0.0/24, labels: {tier: web}}\n",
			want: `apply cluster.yaml: change 1 of 1 failed (0 made before it; the cluster changed since the plan was made, or the change clashes with it; run ovctl apply again to see the new plan): ~ network front: labels +tier=web: network "front" changed since revision 1 (now 2): conflict`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFake()
			if tc.setup != "" {
				if out, err := run(t, c, tc.setup, Options{}); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
			}
			raced := false
			c.before = func(op string) {
				if !raced {
					raced = true
					tc.race(c)
				}
			}
			// The race fires on the first write of the apply, after the plan was made.
			out, err := run(t, c, tc.file, Options{})
			if err == nil {
				t.Fatalf("apply succeeded despite the race:\n%s", out)
			}
			if !errors.Is(err, errdefs.ErrConflict) && !errors.Is(err, errdefs.ErrAlreadyExists) {
				t.Errorf("error is not a conflict: %v", err)
			}
			if d := cmp.Diff(tc.want, err.Error()); d != "" {
				t.Errorf("error (-want +got):\n%s", d)
			}
		})
	}
}

func TestRunPruneInUse(t *testing.T) {
	c := newFake()
	if out, err := run(t, c, header+"networks:\n  - {name: old, subnet: 10.40.0.0/24}\n", Options{}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c.inUse["old"] = true
	_, err := run(t, c, header+"networks: []\n", Options{Prune: true})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "- network old") || !strings.Contains(err.Error(), "has endpoints") {
		t.Fatalf("pruning a network in use: %v", err)
	}
	if !strings.Contains(c.dump(), "network old ") {
		t.Error("a network in use was deleted")
	}
}

func TestRunJSON(t *testing.T) {
	c := newFake()
	text := header + "networks:\n  - {name: front, subnet: 10.20.0.0/24}\n"
	out, err := run(t, c, text, Options{JSON: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "file": "cluster.yaml",
  "changes": [
    {
      "op": "create",
      "kind": "network",
      "name": "front",
      "detail": "(overlay 10.20.0.0/24)"
    }
  ],
  "dryRun": true,
  "applied": false
}
`
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("dry run (-want +got):\n%s", d)
	}
	if out, err = run(t, c, text, Options{JSON: true}); err != nil || !strings.Contains(out, `"applied": true`) {
		t.Errorf("apply: %v\n%s", err, out)
	}
	if out, err = run(t, c, text, Options{JSON: true}); err != nil || !strings.Contains(out, `"op": "unchanged"`) || !strings.Contains(out, `"applied": false`) {
		t.Errorf("second apply: %v\n%s", err, out)
	}
}
