package vxlan_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/vxlan"
	"github.com/ovnet/ov/internal/vxlan/vxlantest"
)

// On real kernels: the controller hands out one address twice (B on host 1, C on host 2). Host 0
// leaves both claims out and still carries the rest of that network and another network; hosts 1
// and 2 each keep their own container and leave the other's claim out. Nothing reaches the wrong host.
func TestLabDuplicateAddressLeavesTheRestWorking(t *testing.T) {
	lab, ds := newLab(t, 3, 1500)
	front := vxlan.Network{Name: "front", VNI: 100, Subnet: pfx("10.1.0.0/24"), Gateway: a("10.1.0.1")}
	back := vxlan.Network{Name: "back", VNI: 200, Subnet: pfx("10.2.0.0/24"), Gateway: a("10.2.0.1")}
	c := &cluster{lab: lab}
	A := c.add(t, "A", 0, front, "10.1.0.2")
	B := c.add(t, "B", 1, front, "10.1.0.3")
	c.add(t, "C", 2, front, "10.1.0.3") // the duplicate
	D := c.add(t, "D", 1, front, "10.1.0.4")
	E := c.add(t, "E", 0, back, "10.2.0.2")
	F := c.add(t, "F", 2, back, "10.2.0.3")
	c.reconcileAll(t, ds) // fails the test on any reconcile error

	if err := reachable(t, A, D.ip, 84); err != nil {
		t.Errorf("A cannot reach D on the network with the conflict: %v", err)
	}
	if err := reachable(t, E, F.ip, 84); err != nil {
		t.Errorf("E cannot reach F on the other network: %v", err)
	}
	if err := vxlantest.Ping(A.path, B.ip, 84, time.Second); err == nil {
		t.Errorf("A reached the conflicting address %s: on host 1 or 2, a guess", B.ip)
	}
	if err := reachable(t, D, B.ip, 84); err != nil { // on host 1, B is local: its own claim wins
		t.Errorf("D cannot reach B on its own host: %v", err)
	}
	s := ds[0].Status()
	var got []string
	for _, n := range s.Networks {
		for _, p := range n.Problems {
			got = append(got, n.Name+" "+p.Kind+" "+p.Entry)
		}
	}
	want := "front peer 10.1.0.3 on 192.168.77.11,front peer 10.1.0.3 on 192.168.77.12"
	if strings.Join(got, ",") != want || s.ProblemsDetected != 2 {
		t.Fatalf("host 0 problems: %v (%d detected), want %s (2 detected)", got, s.ProblemsDetected, want)
	}
	for i, d := range ds {
		if err := d.Reconcile(context.Background(), vxlan.State{}); err != nil {
			t.Fatal(err)
		}
		if got := ovObjects(t, lab.Hosts[i].Name); got != "" {
			t.Errorf("host %d after teardown:\n%s", i, got)
		}
	}
}
