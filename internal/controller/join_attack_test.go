package controller_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/errdefs"
)

// TestAttackJoinTokenExpiredOrRotated: a leaked join token stops working when it expires, and when an
// admin rotates it; each refusal says why and what to do. Hosts registered before keep working.
func TestAttackJoinTokenExpiredOrRotated(t *testing.T) {
	e := storetest.Embedded(t, true)
	s := startControllerWith(t, []string{e.ClientURL()}, 5*time.Second, func(c *controller.Config) { c.JoinTokenTTL = 2 * time.Second })
	ctx := context.Background()
	h1 := registerHost(t, s, "h1", "192.168.61.1")

	jt, err := s.Admin.JoinToken(ctx)
	if err != nil || jt.Token != joinToken || jt.Expires.IsZero() {
		t.Fatalf("join token = %+v, %v; want the configured one, with an expiry", jt, err)
	}
	if _, err := h1.JoinToken(ctx); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("a host token reads the join token: %v; want unauthorized", err)
	}

	// Expired: the leaked token registers nothing.
	time.Sleep(time.Until(jt.Expires) + 100*time.Millisecond)
	_, err = s.Join.RegisterHost(ctx, api.Host{Name: "evil", Address: "192.168.61.66"})
	if !errors.Is(err, errdefs.ErrUnauthorized) || !strings.Contains(err.Error(), "join token expired at") || !strings.Contains(err.Error(), "ovctl node join-token --rotate") {
		t.Fatalf("register with an expired join token: %v; want unauthorized, naming the expiry and the fix", err)
	}
	if _, err := h1.Heartbeat(ctx, "h1"); err != nil {
		t.Fatalf("a registered host stopped working with the join token's expiry: %v", err)
	}

	// Rotated: the new token works; the one it replaced does not, even before it would expire.
	a, err := s.Admin.RotateJoinToken(ctx, "1h")
	if err != nil || a.Token == joinToken || time.Until(a.Expires) < 59*time.Minute {
		t.Fatalf("rotate: %+v, %v", a, err)
	}
	if _, err := newClient(t, s.URL, a.Token).RegisterHost(ctx, api.Host{Name: "h2", Address: "192.168.61.2"}); err != nil {
		t.Fatalf("register with the rotated token: %v", err)
	}
	b, err := s.Admin.RotateJoinToken(ctx, "")
	if err != nil || b.Token == a.Token {
		t.Fatalf("second rotate: %+v, %v", b, err)
	}
	_, err = newClient(t, s.URL, a.Token).RegisterHost(ctx, api.Host{Name: "evil", Address: "192.168.61.66"})
	if !errors.Is(err, errdefs.ErrUnauthorized) || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("register with a rotated-away join token: %v; want unauthorized, saying it was replaced", err)
	}
	if _, err := s.Admin.GetHost(ctx, "evil"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("host evil: %v; want not found", err)
	}
	if _, err := s.Admin.RotateJoinToken(ctx, "soon"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("rotate with ttl \"soon\": %v; want invalid argument", err)
	}
}

// TestAttackHostAddress: a registration (new, or a re-registration with a host token) cannot claim
// another host's underlay address, nor one that is not a unicast address; a host re-registers at its
// own address.
func TestAttackHostAddress(t *testing.T) {
	s, _ := embeddedController(t)
	ctx := context.Background()
	h1 := registerHost(t, s, "h1", "192.168.62.1")
	h2 := registerHost(t, s, "h2", "192.168.62.2")

	_, err := s.Join.RegisterHost(ctx, api.Host{Name: "evil", Address: "192.168.62.1"})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), `host "h1"`) {
		t.Fatalf("a new host claiming h1's address: %v; want conflict naming h1", err)
	}
	_, err = h2.RegisterHost(ctx, api.Host{Name: "h2", Address: "192.168.62.1"})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), `host "h1"`) {
		t.Fatalf("h2 re-registering with h1's address: %v; want conflict naming h1", err)
	}
	if h, err := s.Admin.GetHost(ctx, "h2"); err != nil || h.Address != "192.168.62.2" {
		t.Fatalf("h2 after the attempt: %+v, %v; want its own address", h, err)
	}
	for _, addr := range []string{"0.0.0.0", "255.255.255.255", "224.0.0.251", "239.1.2.3", "127.0.0.1", "240.0.0.1", "0.1.2.3"} {
		if _, err := s.Join.RegisterHost(ctx, api.Host{Name: "odd", Address: addr}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("register at %s: %v; want invalid argument", addr, err)
		}
	}
	if _, err := h1.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.168.62.1"}); err != nil {
		t.Fatalf("h1 re-registering at its own address: %v", err)
	}
	if _, err := h1.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.168.62.11"}); err != nil {
		t.Fatalf("h1 moving to a free address: %v", err)
	}
}
