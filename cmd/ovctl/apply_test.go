package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/apply"
	ctlclient "github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/controllertest"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/errdefs"
)

const (
	testAdminToken = "apply-admin-token-0123456789"
	testJoinToken  = "apply-join-token-0123456789"
)

// startTestController runs a real controller on an embedded etcd and returns its URL and an admin client.
func startTestController(t *testing.T) (string, *ctlclient.Client) {
	t.Helper()
	e := storetest.Embedded(t, true)
	hs := controllertest.Start(t, controllertest.Config{Endpoints: []string{e.ClientURL()}, AdminToken: testAdminToken, JoinToken: testJoinToken, RequestTimeout: 10 * time.Second})
	admin, err := ctlclient.New(ctlclient.Config{URL: hs.URL, Token: testAdminToken})
	if err != nil {
		t.Fatal(err)
	}
	return hs.URL, admin
}

// ovctl runs the ovctl command line in-process and returns what it printed.
func ovctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return ovctlStdin(t, "", args...)
}

func ovctlStdin(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// clusterState renders the controller's networks and hosts with their revisions: equal renderings mean
// nothing was written.
func clusterState(t *testing.T, c *ctlclient.Client) string {
	t.Helper()
	ctx := context.Background()
	nets, err := c.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := c.ListHosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, n := range nets {
		lines = append(lines, fmt.Sprintf("network %s %s %s gw=%s internal=%t labels=%v rev=%d", n.Name, n.Driver, n.Subnet, n.Gateway, n.Internal, n.Labels, n.Revision))
	}
	for _, h := range hosts {
		lines = append(lines, fmt.Sprintf("host %s %s labels=%v rev=%d", h.Name, h.Address, h.Labels, h.Revision))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestApplyIntegration applies deploy/examples/cluster.yaml through ovctl and the real controller (on an
// embedded etcd): twice (the second run changes nothing), then a broken file (nothing changes), then
// --dry-run and --prune, then a write that loses a race.
func TestApplyIntegration(t *testing.T) {
	url, admin := startTestController(t)
	ctx := context.Background()
	flags := []string{"--controller", url, "--token", testAdminToken}
	example := "../../deploy/examples/cluster.yaml"

	// The agents of host1 and host2 have joined; host3's has not. Someone made a network by hand.
	join, err := ctlclient.New(ctlclient.Config{URL: url, Token: testJoinToken})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []api.Host{{Name: "host1", Address: "192.168.77.11"}, {Name: "host2", Address: "192.168.77.12", Labels: map[string]string{"agent": "yes"}}} {
		if _, err := join.RegisterHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.CreateNetwork(ctx, api.Network{Name: "manual", Driver: api.DriverOverlay, Subnet: "10.99.0.0/24"}); err != nil {
		t.Fatal(err)
	}

	out, err := ovctl(t, append([]string{"apply", "-f", example}, flags...)...)
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
	nets, err := admin.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]api.Network{}
	for _, n := range nets {
		got[n.Name] = n
	}
	if f := got["front"]; f.Subnet != "10.20.0.0/24" || f.Gateway != "10.20.0.1" || f.Internal || f.Labels["tier"] != "web" || f.Labels[apply.ManagedLabel] != "true" || f.VNI == 0 {
		t.Errorf("front in the controller: %+v", f)
	}
	if b := got["back"]; b.Subnet != "10.30.0.0/24" || !b.Internal || b.Labels["tier"] != "db" || b.VNI == 0 || b.VNI == got["front"].VNI {
		t.Errorf("back in the controller: %+v", b)
	}
	if h, err := admin.GetHost(ctx, "host2"); err != nil || h.Labels["zone"] != "a" || h.Labels["agent"] != "yes" {
		t.Errorf("host2 labels after apply: %v %v (want the agent's label kept and zone=a added)", h.Labels, err)
	}

	// Twice: nothing to do, nothing written.
	before := clusterState(t, admin)
	out, err = ovctl(t, append([]string{"apply", "-f", example}, flags...)...)
	if err != nil {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	if !strings.HasSuffix(out, "No changes: the cluster already matches "+example+".\n") || strings.ContainsAny(out[:1], "+~-") {
		t.Errorf("second apply:\n%s", out)
	}
	if after := clusterState(t, admin); after != before {
		t.Errorf("second apply wrote to the cluster:\n%s", cmp.Diff(before, after))
	}

	// The same file from standard input, named <stdin> in messages.
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	out, err = ovctlStdin(t, string(data), append([]string{"apply", "-f", "-"}, flags...)...)
	if err != nil || !strings.HasSuffix(out, "No changes: the cluster already matches <stdin>.\n") {
		t.Errorf("apply -f -: %v\n%s", err, out)
	}

	// A broken file: its first change is valid, its last network overlaps the hand-made one. Nothing changes.
	text := strings.Replace(string(data), "labels: {tier: web}", "labels: {tier: api}", 1) +
		"  - name: extra\n    subnet: 10.99.0.0/16\n"
	broken := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(broken, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	line := strings.Count(text, "\n") // the subnet line is the last one
	out, err = ovctl(t, append([]string{"apply", "-f", broken}, flags...)...)
	wantErr := fmt.Sprintf(`%s:%d: network "extra": subnet 10.99.0.0/16 overlaps the existing network "manual" (10.99.0.0/24), which the file does not name; choose another subnet, or remove "manual" first (ovctl network rm manual); it was not created by apply, so --prune leaves it`, broken, line)
	if err == nil || err.Error() != wantErr || !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("broken file: got error\n%v\nwant\n%s", err, wantErr)
	}
	if out != "" {
		t.Errorf("broken file printed a plan:\n%s", out)
	}
	if after := clusterState(t, admin); after != before {
		t.Errorf("a broken file changed the cluster:\n%s", cmp.Diff(before, after))
	}

	// --dry-run, then --prune with a file that keeps only front.
	onlyFront := filepath.Join(t.TempDir(), "front.yaml")
	if err := os.WriteFile(onlyFront, []byte("apiVersion: ov/v1\nkind: Cluster\nnetworks:\n  - {name: front, subnet: 10.20.0.0/24, labels: {tier: web}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = ovctl(t, append([]string{"apply", "-f", onlyFront, "--prune", "--dry-run", "-o", "json"}, flags...)...)
	var report apply.Report
	if err != nil || json.Unmarshal([]byte(out), &report) != nil || report.Applied || !report.DryRun || len(report.Changes) != 3 || report.Changes[0].Op != apply.OpDelete {
		t.Errorf("dry run, -o json: %v\n%s", err, out)
	}
	out, err = ovctl(t, append([]string{"apply", "-f", onlyFront, "--prune", "--dry-run"}, flags...)...)
	if err != nil || !strings.HasPrefix(out, "- network back (overlay 10.30.0.0/24") || !strings.HasSuffix(out, "Dry run: nothing was changed.\n") {
		t.Errorf("dry run: %v\n%s", err, out)
	}
	if after := clusterState(t, admin); after != before {
		t.Errorf("--dry-run changed the cluster:\n%s", cmp.Diff(before, after))
	}
	out, err = ovctl(t, append([]string{"apply", "-f", onlyFront, "--prune"}, flags...)...)
	if err != nil {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	if !strings.Contains(out, "! network manual kept: not created by apply") || !strings.Contains(out, "Applied: 0 created, 0 changed, 1 deleted.\n") {
		t.Errorf("prune:\n%s", out)
	}
	if _, err := admin.GetNetwork(ctx, "back"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("back after --prune: %v (want not found)", err)
	}
	for _, name := range []string{"front", "manual"} {
		if _, err := admin.GetNetwork(ctx, name); err != nil {
			t.Errorf("%s after --prune: %v", name, err)
		}
	}

	// A write that loses a race: front changes between the plan and the apply.
	f, err := apply.Parse("race.yaml", []byte("apiVersion: ov/v1\nkind: Cluster\nnetworks:\n  - {name: front, labels: {tier: new}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := apply.Current(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	p, err := apply.NewPlan(f, cur, apply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := admin.GetNetwork(ctx, "front")
	if err != nil {
		t.Fatal(err)
	}
	n.Labels["owner"] = "someone-else"
	if _, err := admin.UpdateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	err = p.Apply(ctx, admin)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "~ network front: labels tier=web->new") || !strings.Contains(err.Error(), "run ovctl apply again") {
		t.Errorf("lost race: %v", err)
	}
	if n, _ := admin.GetNetwork(ctx, "front"); n.Labels["owner"] != "someone-else" || n.Labels["tier"] != "web" {
		t.Errorf("the losing write overwrote the winner: %v", n.Labels)
	}

	// A network left to the controller's pick, named before one that pins the pool's first subnet: the
	// pinned one is created first, so both succeed.
	picks := filepath.Join(t.TempDir(), "picks.yaml")
	if err := os.WriteFile(picks, []byte("apiVersion: ov/v1\nkind: Cluster\nnetworks:\n  - name: auto\n  - {name: pinned, subnet: 10.128.0.0/24}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := ovctl(t, append([]string{"apply", "-f", picks}, flags...)...); err != nil {
		t.Fatalf("auto and pinned: %v\n%s", err, out)
	}
	if a, err := admin.GetNetwork(ctx, "auto"); err != nil || a.Subnet == "" || a.Subnet == "10.128.0.0/24" {
		t.Errorf("auto: %+v %v", a, err)
	}
}
