package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// TestNodeCommands: ovctl node ls and node rm against a real controller; rm releases the host's
// addresses, and an unknown host is reported.
func TestNodeCommands(t *testing.T) {
	url, admin := startTestController(t)
	ctx := context.Background()
	if _, err := admin.CreateNetwork(ctx, api.Network{Name: "n", Subnet: "10.45.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.168.74.1", Labels: map[string]string{"zone": "a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Allocate(ctx, api.Endpoint{Network: "n", Host: "h1", Container: "c1"}); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--controller", url, "--token", testAdminToken}

	out, err := ovctl(t, append([]string{"node", "ls"}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "h1") || !strings.Contains(out, "192.168.74.1") || !strings.Contains(out, "alive") || !strings.Contains(out, "zone=a") {
		t.Fatalf("node ls:\n%s", out)
	}
	out, err = ovctl(t, append([]string{"node", "ls", "-o", "json"}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	var hosts []api.Host
	if err := json.Unmarshal([]byte(out), &hosts); err != nil || len(hosts) != 1 || hosts[0].State != api.HostAlive {
		t.Fatalf("node ls -o json: %v\n%s", err, out)
	}

	out, err = ovctl(t, append([]string{"node", "rm", "h1", "ghost"}, flags...)...)
	if err == nil || !strings.Contains(out, `host "ghost" is not registered`) || !strings.HasPrefix(out, "h1\n") {
		t.Fatalf("node rm h1 ghost: %v\n%s", err, out)
	}
	eps, _, err := admin.ListEndpoints(ctx, "n")
	if err != nil || len(eps) != 0 {
		t.Fatalf("after node rm: endpoints %+v, %v; want none", eps, err)
	}
	if _, err := ovctl(t, "node", "ls", "--controller", url, "--token", "wrong-token"); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("node ls with a bad token: %v, want unauthorized", err)
	}

	out, err = ovctl(t, append([]string{"node", "join-token"}, flags...)...)
	if err != nil || !strings.HasPrefix(out, testJoinToken+"\n") || !strings.Contains(out, "expires at") {
		t.Fatalf("node join-token: %v\n%s", err, out)
	}
	out, err = ovctl(t, append([]string{"node", "join-token", "--rotate", "--ttl", "2h"}, flags...)...)
	if err != nil || strings.Contains(out, testJoinToken) || !strings.Contains(out, "expires at") {
		t.Fatalf("node join-token --rotate --ttl 2h: %v\n%s", err, out)
	}
	newToken := strings.SplitN(out, "\n", 2)[0]
	if _, err := ovctl(t, append([]string{"node", "join-token", "--ttl", "2h"}, flags...)...); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("node join-token --ttl without --rotate: %v; want invalid argument", err)
	}
	if _, err := admin.WithToken(testJoinToken).RegisterHost(ctx, api.Host{Name: "late", Address: "192.168.74.9"}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("register with the rotated-away join token: %v; want unauthorized", err)
	}
	if _, err := admin.WithToken(newToken).RegisterHost(ctx, api.Host{Name: "late", Address: "192.168.74.9"}); err != nil {
		t.Fatalf("register with the new join token %q: %v", newToken, err)
	}

	out, err = ovctl(t, append([]string{"node", "gossip-key", "rotate"}, flags...)...)
	if err != nil || !strings.Contains(out, "version 2, 2 key(s)") {
		t.Fatalf("node gossip-key rotate: %v\n%s", err, out)
	}
	out, err = ovctl(t, append([]string{"node", "gossip-key"}, flags...)...)
	if err != nil || !strings.Contains(out, "version 2, 2 key(s)") {
		t.Fatalf("node gossip-key: %v\n%s", err, out)
	}
}

// TestOverlayNetworkCommands: ovctl network create -d overlay goes to the controller; ls, inspect and rm
// find overlay networks there when the local agent does not have them (or does not run).
func TestOverlayNetworkCommands(t *testing.T) {
	url, admin := startTestController(t)
	ctx := context.Background()
	flags := []string{"--controller", url, "--token", testAdminToken, "--socket", t.TempDir() + "/no-agent.sock"}
	run := func(args ...string) (string, error) { return ovctl(t, append(args, flags...)...) }

	if _, err := run("network", "create", "-d", "overlay", "--subnet", "10.46.0.0/24", "--vni", "7000", "blue"); err != nil {
		t.Fatal(err)
	}
	n, err := admin.GetNetwork(ctx, "blue")
	if err != nil || n.Driver != api.DriverOverlay || n.VNI != 7000 || n.Gateway != "10.46.0.1" {
		t.Fatalf("blue in the controller: %+v, %v", n, err)
	}
	if _, err := run("network", "create", "-d", "overlay", "--subnet", "10.46.0.0/16", "red"); !errors.Is(err, errdefs.ErrConflict) ||
		!strings.Contains(err.Error(), `subnet 10.46.0.0/16 overlaps network "blue" (10.46.0.0/24)`) {
		t.Fatalf("overlapping create: %v", err)
	}
	if _, err := run("network", "inspect", "blue"); err != nil {
		t.Fatalf("inspect an overlay network without an agent: %v", err)
	}
	if _, err := run("network", "rm", "blue"); err != nil {
		t.Fatalf("rm an overlay network without an agent: %v", err)
	}
	if _, err := admin.GetNetwork(ctx, "blue"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("blue after rm: %v, want not found", err)
	}
}
