// Package controllertest runs a real controller for tests: on the etcd a test names (an embedded one
// from storetest, or a cluster), served on a loopback httptest server, taken down when the test ends.
package controllertest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/store"
)

// Config says how to start the controller. Endpoints, AdminToken and JoinToken are required.
type Config struct {
	Endpoints      []string      // etcd client URLs
	AdminToken     string        // the controller's admin token
	JoinToken      string        // its join token
	RequestTimeout time.Duration // the store's per-request timeout (0: the store's default)
	Log            *slog.Logger  // nil: discarded
	// Adjust changes the controller's configuration before it starts (nil: none). Start sets a 200 ms
	// watch heartbeat, which tests that cut streams rely on.
	Adjust func(*controller.Config)
}

// Server is a running controller.
type Server struct {
	URL  string           // base URL of its API
	HTTP *httptest.Server // the test server (to cut client connections)
	stop func()
}

// Stop takes the controller down (idempotent; it also happens when the test ends).
func (s *Server) Stop() { s.stop() }

// Start runs a controller as cfg says; it fails the test when it cannot.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := store.Open(store.Config{Endpoints: cfg.Endpoints, RequestTimeout: cfg.RequestTimeout, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ccfg := controller.DefaultConfig()
	ccfg.Store, ccfg.AdminToken, ccfg.JoinToken, ccfg.Log = st, cfg.AdminToken, cfg.JoinToken, log
	ccfg.WatchHeartbeat = 200 * time.Millisecond
	if cfg.Adjust != nil {
		cfg.Adjust(&ccfg)
	}
	c, err := controller.New(ccfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	hs := httptest.NewServer(c.Handler())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			hs.CloseClientConnections()
			hs.Close()
			cancel()
			<-done
			st.Close()
		})
	}
	t.Cleanup(stop)
	return &Server{URL: hs.URL, HTTP: hs, stop: stop}
}
