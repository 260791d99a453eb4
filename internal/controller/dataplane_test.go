package controller_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

// TestDataplaneReports: hosts report the hosts they find unreachable; node ls (ListHosts) shows each
// host's data plane with the reporters; a host reports only for itself; an empty report clears it.
func TestDataplaneReports(t *testing.T) {
	s, _ := embeddedController(t)
	ctx := context.Background()
	h1 := registerHost(t, s, "h1", "192.168.50.21")
	h2 := registerHost(t, s, "h2", "192.168.50.22")
	h3 := registerHost(t, s, "h3", "192.168.50.23")
	view := func() string {
		t.Helper()
		hosts, err := s.Admin.ListHosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range hosts {
			out = append(out, fmt.Sprintf("%s=%s%v", h.Name, h.Dataplane, h.UnreachableFrom))
		}
		return strings.Join(out, " ")
	}
	if got, want := view(), "h1=reachable[] h2=reachable[] h3=reachable[]"; got != want {
		t.Fatalf("before any report: %s, want %s", got, want)
	}
	for _, r := range []struct {
		c interface {
			ReportDataplane(context.Context, string, []string) error
		}
		host string
	}{{h2, "h2"}, {h3, "h3"}} {
		if err := r.c.ReportDataplane(ctx, r.host, []string{"h1"}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := view(), "h1=unreachable[h2 h3] h2=reachable[] h3=reachable[]"; got != want {
		t.Fatalf("h2 and h3 report h1: %s, want %s", got, want)
	}
	if err := h2.ReportDataplane(ctx, "h2", nil); err != nil {
		t.Fatal(err)
	}
	if got, want := view(), "h1=unreachable[h3] h2=reachable[] h3=reachable[]"; got != want {
		t.Fatalf("h2 clears its report: %s, want %s", got, want)
	}
	if err := h1.ReportDataplane(ctx, "h3", nil); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("h1 clearing h3's report = %v, want unauthorized", err)
	}
	if err := h1.ReportDataplane(ctx, "h1", []string{"not a name!"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("a report naming an invalid host = %v, want invalid argument", err)
	}
	if err := s.Admin.RemoveHost(ctx, "h3"); err != nil {
		t.Fatal(err)
	}
	if got, want := view(), "h1=reachable[] h2=reachable[]"; got != want {
		t.Fatalf("the reporter h3 removed: %s, want %s", got, want)
	}
	if err := h3.ReportDataplane(ctx, "h3", []string{"h1"}); err == nil {
		t.Fatal("a removed host's report was accepted")
	}
}
