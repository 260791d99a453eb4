package overlay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/controllertest"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/testutil"
)

const (
	testAdminToken = "admin-token-0123456789"
	testJoinToken  = "join-token-0123456789ab"
)

// realController runs a controller on an embedded etcd, served on loopback, and returns an admin
// client and a Connect for agents.
func realController(t *testing.T) (*client.Client, func(string) Controller) {
	t.Helper()
	e := storetest.Embedded(t, true)
	hs := controllertest.Start(t, controllertest.Config{Endpoints: []string{e.ClientURL()}, AdminToken: testAdminToken, JoinToken: testJoinToken})
	base, err := client.New(client.Config{URL: hs.URL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return base.WithToken(testAdminToken), func(tok string) Controller { return base.WithToken(tok) }
}

// TestLostHostTokenResetKeepsAddress, end to end with a real controller and etcd: an agent whose host
// token file is damaged or deleted cannot join (the join token does not take over a registered host)
// and says so, naming ovctl node reset-token; after the reset it joins again by itself (a running
// agent whose token is reset too, after repeated refusals), and its
// running container's address is neither changed nor ever released (same etcd revision throughout).
func TestLostHostTokenResetKeepsAddress(t *testing.T) {
	admin, connect := realController(t)
	ctx := context.Background()
	if _, err := admin.CreateNetwork(ctx, api.Network{Name: "front", Driver: api.DriverOverlay, Subnet: "10.20.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenPath := filepath.Join(dir, "host-token")
	var logs logBuffer
	cfg := Config{Host: "host1", Address: harnessAddr, StatePath: filepath.Join(dir, "overlay.json"), Connect: connect,
		JoinToken: testJoinToken, RequestTimeout: 5 * time.Second, Heartbeat: 100 * time.Millisecond,
		TokenRefusalWindow: 500 * time.Millisecond, Log: newLog(&logs)}
	h := startAgent(t, cfg)
	testutil.Eventually(t, 10*time.Second, func() error { _, err := h.d.ready(); return err })
	ep, err := h.d.Attach(ctx, driver.AttachRequest{Network: "front", Container: "c1", Netns: "/run/ov/netns/c1"})
	if err != nil {
		t.Fatal(err)
	}
	orig := held(t, admin)
	if orig.IP != ep.IP {
		t.Fatalf("controller holds %+v, the agent gave c1 %s", orig, ep.IP)
	}
	old, _ := os.ReadFile(tokenPath)

	// An admin resets the token of a running host (it may have leaked): the agent's heartbeats are
	// refused, it sets the token aside after repeated refusals and re-joins with the join token.
	if _, err := admin.ResetToken(ctx, "host1"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		b, err := os.ReadFile(tokenPath)
		if err != nil || string(b) == string(old) {
			return fmt.Errorf("no new host token yet")
		}
		_, err = h.d.ready()
		return err
	})
	if b, err := os.ReadFile(tokenPath + ".refused"); err != nil || string(b) != string(old) {
		t.Fatalf("the refused token was not kept aside: %q, %v", b, err)
	}
	if logs.count("level=ERROR", "refused this host's token", "reset-token host1") != 1 {
		t.Fatalf("want one error saying the token was refused and set aside; logs:\n%s", logs.String())
	}
	if got := held(t, admin); !reflect.DeepEqual(got, orig) {
		t.Fatalf("after reset-token of a running host: c1 %+v, want %+v (same address, never released)", got, orig)
	}
	old, _ = os.ReadFile(tokenPath)

	for _, damage := range []struct {
		name string
		do   func() error
	}{
		{"damaged", func() error { return os.WriteFile(tokenPath, []byte("ovh.host1 \x00 torn write"), 0o600) }},
		{"deleted", func() error { return os.Remove(tokenPath) }},
	} {
		h.stop()
		if err := damage.do(); err != nil {
			t.Fatal(err)
		}
		h = startAgent(t, cfg)
		testutil.Eventually(t, 10*time.Second, func() error { // refuses cleanly: one clear error
			if logs.count("level=ERROR", "reset-token host1", "cannot join") == 0 {
				return fmt.Errorf("%s token: no error naming ovctl node reset-token yet", damage.name)
			}
			return nil
		})
		if _, err := h.d.ready(); err == nil {
			t.Fatalf("%s token: the agent joined without a valid host token", damage.name)
		}
		if got := held(t, admin); !reflect.DeepEqual(got, orig) {
			t.Fatalf("%s token: c1 now %+v, want %+v untouched", damage.name, got, orig)
		}
		if _, err := admin.ResetToken(ctx, "host1"); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 15*time.Second, func() error { _, err := h.d.ready(); return err })
		if got := held(t, admin); !reflect.DeepEqual(got, orig) {
			t.Fatalf("%s token, after reset-token and re-join: c1 %+v, want %+v (same address, never released)", damage.name, got, orig)
		}
		b, err := os.ReadFile(tokenPath)
		if tok := strings.TrimSpace(string(b)); err != nil || !validToken(tok) || tok == strings.TrimSpace(string(old)) {
			t.Fatalf("%s token, after the re-join: token file %q, %v; want a new valid token", damage.name, b, err)
		}
		old = b
		logs.mu.Lock()
		logs.buf.Reset()
		logs.mu.Unlock()
	}
}

// held returns c1's allocation as the controller holds it (the only endpoint of network front).
func held(t *testing.T, admin *client.Client) api.Endpoint {
	t.Helper()
	eps, _, err := admin.ListEndpoints(context.Background(), "front")
	if err != nil || len(eps) != 1 {
		t.Fatalf("endpoints of front: %+v, %v; want c1's only", eps, err)
	}
	e := eps[0]
	e.Created = e.Created.UTC()
	return e
}
