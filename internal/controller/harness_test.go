package controller_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/controllertest"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/controller/store/storetest"
)

const (
	adminToken = "admin-token-0123456789"
	joinToken  = "join-token-0123456789ab"
)

// server is one controller serving the API on a loopback test server.
type server struct {
	URL   string
	Admin *client.Client
	Join  *client.Client
	HTTP  *httptest.Server
}

func testLog() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("OV_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// startController starts a controller against etcd at endpoints and serves it until the test ends.
func startController(t testing.TB, endpoints []string, requestTimeout time.Duration) *server {
	t.Helper()
	return startControllerWith(t, endpoints, requestTimeout, nil)
}

// startControllerWith is startController with a configuration changed by adjust (nil: none).
func startControllerWith(t testing.TB, endpoints []string, requestTimeout time.Duration, adjust func(*controller.Config)) *server {
	t.Helper()
	s := controllertest.Start(t, controllertest.Config{Endpoints: endpoints, AdminToken: adminToken, JoinToken: joinToken,
		RequestTimeout: requestTimeout, Log: testLog(), Adjust: adjust})
	return &server{URL: s.URL, Admin: newClient(t, s.URL, adminToken), Join: newClient(t, s.URL, joinToken), HTTP: s.HTTP}
}

func newClient(t testing.TB, url, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{URL: url, Token: token, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// embeddedController starts an embedded etcd and one controller on it.
func embeddedController(t testing.TB) (*server, *store.Embedded) {
	t.Helper()
	e := storetest.Embedded(t, true)
	return startController(t, []string{e.ClientURL()}, 5*time.Second), e
}

// registerHost registers a host with the join token and returns a client holding its host token.
func registerHost(t testing.TB, s *server, name, addr string) *client.Client {
	t.Helper()
	h, err := s.Join.RegisterHost(context.Background(), api.Host{Name: name, Address: addr})
	if err != nil {
		t.Fatalf("register host %s: %v", name, err)
	}
	if h.Token == "" {
		t.Fatalf("register host %s: no host token in the answer", name)
	}
	return s.Join.WithToken(h.Token)
}
