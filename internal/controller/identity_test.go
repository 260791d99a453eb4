package controller_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/testutil"
)

// TestResetTokenKeepsAddresses: ovctl node reset-token revokes a host's token and lets its agent
// register again with the join token, once, keeping its record and the addresses its containers hold.
func TestResetTokenKeepsAddresses(t *testing.T) {
	s, _ := embeddedController(t)
	ctx := context.Background()
	if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "front", Subnet: "10.7.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	old := registerHost(t, s, "h1", "192.0.2.11")
	ep, err := old.Allocate(ctx, api.Endpoint{Network: "front", Host: "h1", Container: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	// Without a reset, the join token cannot take over a registered host.
	if _, err := s.Join.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.0.2.11"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("join token on a registered host: %v, want ErrAlreadyExists", err)
	}
	if _, err := old.ResetToken(ctx, "h1"); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("a host token reset a token: %v, want ErrUnauthorized (admin only)", err)
	}
	if _, err := s.Admin.ResetToken(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("reset-token of an unknown host: %v, want ErrNotFound", err)
	}
	if _, err := s.Admin.ResetToken(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error { // the old token stops working
		_, err := old.Heartbeat(ctx, "h1")
		if !errors.Is(err, errdefs.ErrUnauthorized) {
			return errors.New("the old host token still works after the reset")
		}
		return nil
	})
	h, err := s.Join.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.0.2.11"})
	if err != nil || h.Token == "" {
		t.Fatalf("re-join after reset-token: %+v, %v; want a new host token", h, err)
	}
	if _, err := s.Join.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.0.2.11"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second re-join with the join token: %v, want ErrAlreadyExists (the permit is used up)", err)
	}
	fresh := s.Join.WithToken(h.Token)
	if _, err := fresh.Heartbeat(ctx, "h1"); err != nil {
		t.Fatalf("heartbeat with the new token: %v", err)
	}
	got, err := fresh.Allocate(ctx, api.Endpoint{Network: "front", Host: "h1", Container: "c1"})
	if err != nil || got.IP != ep.IP {
		t.Fatalf("c1 after the reset: %+v, %v; want its address %s kept", got, err, ep.IP)
	}
	eps, err := s.Admin.HostEndpoints(ctx, "h1")
	if err != nil || len(eps) != 1 || eps[0].IP != ep.IP {
		t.Fatalf("h1's endpoints after the reset: %v, %v; want c1 at %s only", eps, err, ep.IP)
	}
}

// TestHeartbeatDoesNotChangeHostRecord: liveness is an etcd lease, so a heartbeat leaves the host
// record (whose revision every allocation compares) alone; a silent host turns dead when the lease
// expires, and alive again with its next heartbeat.
func TestHeartbeatDoesNotChangeHostRecord(t *testing.T) {
	e := storetest.Embedded(t, true)
	s := startControllerWith(t, []string{e.ClientURL()}, 5*time.Second, func(c *controller.Config) { c.HostDeadAfter = 2 * time.Second })
	ctx := context.Background()
	h1 := registerHost(t, s, "h1", "192.0.2.11")
	before, err := s.Admin.GetHost(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := h1.Heartbeat(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
	}
	after, err := s.Admin.GetHost(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision != before.Revision || after.State != api.HostAlive {
		t.Fatalf("after heartbeats: revision %d state %s, want revision %d (unchanged) and alive", after.Revision, after.State, before.Revision)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if h, err := s.Admin.GetHost(ctx, "h1"); err != nil || h.State != api.HostDead {
			return errors.New("h1 still alive without heartbeats")
		}
		return nil
	})
	if _, err := h1.Heartbeat(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	hosts, err := s.Admin.ListHosts(ctx)
	if err != nil || len(hosts) != 1 || hosts[0].State != api.HostAlive {
		t.Fatalf("after a heartbeat: %+v, %v; want h1 alive", hosts, err)
	}
	// Removed and registered again: alive at once (not only once the old lease's key is rewritten).
	if err := s.Admin.RemoveHost(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if h, err := s.Admin.GetHost(ctx, "h1"); err == nil {
		t.Fatalf("h1 after node rm: %+v", h)
	}
	registerHost(t, s, "h1", "192.0.2.11")
	if h, err := s.Admin.GetHost(ctx, "h1"); err != nil || h.State != api.HostAlive {
		t.Fatalf("h1 registered again: %+v, %v; want alive", h, err)
	}
}

// TestAppliedLabelsSurviveAgentRestart: labels an admin sets (ovctl apply) and the agent's configured
// labels are kept apart; a host's labels are the agent's overlaid by the admin's, and an agent
// registering again (a restart) changes only its own.
func TestAppliedLabelsSurviveAgentRestart(t *testing.T) {
	s, _ := embeddedController(t)
	ctx := context.Background()
	h, err := s.Join.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.0.2.11", Labels: map[string]string{"rack": "r1", "zone": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	agent := s.Join.WithToken(h.Token)
	steps := []struct {
		name string
		do   func() error
		want map[string]string
	}{
		{"registered", func() error { return nil }, map[string]string{"rack": "r1", "zone": "a"}},
		{"apply adds and overrides", func() error {
			_, err := s.Admin.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.0.2.11", Labels: map[string]string{"rack": "r1", "zone": "b", "gpu": "yes"}})
			return err
		}, map[string]string{"rack": "r1", "zone": "b", "gpu": "yes"}},
		{"agent restarts with its config", func() error {
			_, err := agent.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.0.2.11", Labels: map[string]string{"rack": "r1", "zone": "a"}})
			return err
		}, map[string]string{"rack": "r1", "zone": "b", "gpu": "yes"}},
		{"agent config changes a label apply only repeated", func() error {
			_, err := agent.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.0.2.11", Labels: map[string]string{"rack": "r2"}})
			return err
		}, map[string]string{"rack": "r2", "zone": "b", "gpu": "yes"}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := s.Admin.GetHost(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got.Labels, st.want) {
			t.Errorf("%s: labels %v, want %v", st.name, got.Labels, st.want)
		}
	}
}
