package controller_test

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// TestGossipKeyring: the controller creates one keyring (two controllers racing agree on it), gives it
// to hosts and admins only, rotates it keeping the previous primary, and heartbeats carry its version.
func TestGossipKeyring(t *testing.T) {
	s, e := embeddedController(t)
	s2 := startController(t, []string{e.ClientURL()}, 5*time.Second)
	ctx := context.Background()
	h1 := registerHost(t, s, "h1", "192.168.50.1")

	// Both controllers (each may be the one that creates it) answer the same keyring.
	var wg sync.WaitGroup
	got := make([]api.GossipKeyring, 2)
	errs := make([]error, 2)
	for i, c := range []*server{s, s2} {
		wg.Add(1)
		go func() { defer wg.Done(); got[i], errs[i] = c.Admin.GossipKeyring(ctx) }()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("keyring: %v, %v", errs[0], errs[1])
	}
	kr := got[0]
	if len(kr.Keys) != 1 || kr.Version != 1 || got[1].Keys[0] != kr.Keys[0] {
		t.Fatalf("keyrings = %+v; want one key, version 1, the same from both controllers", got)
	}
	if b, err := base64.StdEncoding.DecodeString(kr.Keys[0]); err != nil || len(b) != 32 {
		t.Fatalf("key %q: %d bytes, %v; want 32 bytes of base64", kr.Keys[0], len(b), err)
	}
	if hk, err := h1.GossipKeyring(ctx); err != nil || hk.Keys[0] != kr.Keys[0] {
		t.Fatalf("host token: %+v, %v", hk, err)
	}

	// Neither the join token, a bad token, nor a host may have it or rotate it (401).
	for name, c := range map[string]interface {
		GossipKeyring(context.Context) (api.GossipKeyring, error)
	}{"join": s.Join, "bogus": newClient(t, s.URL, "ovh.h1.0000"), "none": newClient(t, s.URL, "")} {
		if _, err := c.GossipKeyring(ctx); !errors.Is(err, errdefs.ErrUnauthorized) {
			t.Errorf("%s token reads the keyring: %v; want unauthorized", name, err)
		}
	}
	if _, err := h1.RotateGossipKeyring(ctx); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("host token rotates the keyring: %v; want unauthorized", err)
	}

	// Rotation: a new primary, the previous one kept as secondary, never more than 2 keys.
	r1, err := s.Admin.RotateGossipKeyring(ctx)
	if err != nil || len(r1.Keys) != 2 || r1.Keys[1] != kr.Keys[0] || r1.Keys[0] == kr.Keys[0] || r1.Version != 2 {
		t.Fatalf("rotate: %+v, %v; want [new, %s] version 2", r1, err, kr.Keys[0])
	}
	r2, err := s2.Admin.RotateGossipKeyring(ctx)
	if err != nil || len(r2.Keys) != 2 || r2.Keys[1] != r1.Keys[0] || r2.Version != 3 {
		t.Fatalf("second rotate: %+v, %v; want [new, %s] version 3", r2, err, r1.Keys[0])
	}

	// The heartbeat answer carries the version (once the controller's cache has seen it).
	deadline := time.Now().Add(5 * time.Second)
	for {
		h, err := h1.Heartbeat(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		if h.GossipKeyringVersion == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat carries keyring version %d; want 3", h.GossipKeyringVersion)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
