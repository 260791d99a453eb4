package controller_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// TestEndpointNames: the names an agent gives its endpoint are stored and streamed to every watch
// (allocated alone or in a group), emptied and given back by the owner; a hostile or broken agent's
// junk (not DNS names, too many, too long, another host's endpoint) is refused with a clear error and
// changes nothing.
func TestEndpointNames(t *testing.T) {
	s, _ := embeddedController(t)
	ctx := context.Background()
	if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "front", Driver: api.DriverOverlay, Subnet: "10.7.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	h1 := registerHost(t, s, "h1", "192.168.60.1")
	h2 := registerHost(t, s, "h2", "192.168.60.2")

	var mu sync.Mutex
	streamed := map[string][]string{} // container -> names, as h2's watch sees them
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() {
		_ = h2.WatchEndpoints(wctx, "front", 0, func(ev api.EndpointEvent) error {
			mu.Lock()
			defer mu.Unlock()
			switch ev.Type {
			case api.EventSnapshot:
				for _, ep := range ev.Endpoints {
					streamed[ep.Container] = ep.Names
				}
			case api.EventPut:
				streamed[ev.Endpoint.Container] = ev.Endpoint.Names
			}
			return nil
		})
	}()
	waitStreamed := func(container string, want []string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			got, ok := streamed[container]
			mu.Unlock()
			if ok && slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("watch: names of %s = %q, want %q", container, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	stored := func(container string) ([]string, bool) {
		t.Helper()
		eps, _, err := s.Admin.ListEndpoints(ctx, "front")
		if err != nil {
			t.Fatal(err)
		}
		for _, ep := range eps {
			if ep.Container == container {
				return ep.Names, true
			}
		}
		return nil, false
	}

	web := strings.Repeat("a1", 32)
	names := []string{"web", "webhost", "www"}
	ep, err := h1.Allocate(ctx, api.Endpoint{Network: "front", Host: "h1", Container: web, Names: names})
	if err != nil || !slices.Equal(ep.Names, names) {
		t.Fatalf("allocate with names: %+v, %v", ep, err)
	}
	if got, _ := stored(web); !slices.Equal(got, names) {
		t.Fatalf("stored names %q, want %q", got, names)
	}
	waitStreamed(web, names)

	// Concurrent allocations go in groups (batch.go): every one keeps its names.
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := fmt.Sprintf("c%02d", i)
			if _, err := h1.Allocate(ctx, api.Endpoint{Network: "front", Host: "h1", Container: c, Names: []string{"svc", c}}); err != nil {
				t.Errorf("allocate %s: %v", c, err)
			}
		}()
	}
	wg.Wait()
	for i := range 16 {
		c := fmt.Sprintf("c%02d", i)
		if got, _ := stored(c); !slices.Equal(got, []string{"svc", c}) {
			t.Errorf("grouped allocation %s: stored names %q", c, got)
		}
	}

	// Hostile input: refused, nothing stored or changed.
	many := make([]string, api.MaxEndpointNames+1)
	for i := range many {
		many[i] = fmt.Sprintf("n%d", i)
	}
	for _, tc := range []struct {
		name  string
		names []string
	}{
		{"not a DNS name", []string{"web\n10.0.0.1 evil"}},
		{"too many", many},
		{"too long", []string{strings.Repeat("a.", 127) + "a"}},
		{"empty", []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evil := "evil-" + strings.ReplaceAll(tc.name, " ", "-")
			_, err := h1.Allocate(ctx, api.Endpoint{Network: "front", Host: "h1", Container: evil, Names: tc.names})
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "endpoint:") {
				t.Fatalf("allocate with junk names: %v, want invalid argument", err)
			}
			if _, ok := stored(evil); ok {
				t.Fatal("an endpoint with junk names was stored")
			}
			if _, err := h1.SetEndpointNames(ctx, "front", "h1", web, tc.names); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("set junk names: %v, want invalid argument", err)
			}
			if got, _ := stored(web); !slices.Equal(got, names) {
				t.Fatalf("names after a refused change: %q", got)
			}
		})
	}
	if _, err := h2.SetEndpointNames(ctx, "front", "h1", web, []string{"stolen"}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("another host sets the names: %v, want unauthorized", err)
	}
	if _, err := h1.SetEndpointNames(ctx, "front", "h1", "nosuch", []string{"x"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("names of an endpoint that does not exist: %v, want not found", err)
	}
	if got, _ := stored(web); !slices.Equal(got, names) {
		t.Fatalf("names after refused changes: %q", got)
	}

	// The owner empties them (its container stopped) and gives them back (started).
	if ep, err := h1.SetEndpointNames(ctx, "front", "h1", web, nil); err != nil || len(ep.Names) != 0 {
		t.Fatalf("empty the names: %+v, %v", ep, err)
	}
	waitStreamed(web, nil)
	if got, ok := stored(web); !ok || len(got) != 0 {
		t.Fatalf("stored after emptying: %q (endpoint kept: %v)", got, ok)
	}
	if _, err := h1.SetEndpointNames(ctx, "front", "h1", web, names); err != nil {
		t.Fatal(err)
	}
	waitStreamed(web, names)
}
