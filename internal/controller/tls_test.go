package controller_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/errdefs"
)

// TestTLS: the client reaches a controller served over HTTPS when it trusts the certificate, and
// refuses one it does not trust.
func TestTLS(t *testing.T) {
	e := storetest.Embedded(t, true)
	st, err := store.Open(store.Config{Endpoints: []string{e.ClientURL()}, Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := controller.DefaultConfig()
	cfg.Store, cfg.AdminToken, cfg.JoinToken, cfg.Log = st, adminToken, joinToken, testLog()
	c, err := controller.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(c.Handler())
	defer ts.Close()
	pool := ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	good, err := client.New(client.Config{URL: ts.URL, Token: adminToken, TLS: &tls.Config{RootCAs: pool}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := good.ListNetworks(context.Background()); err != nil {
		t.Fatalf("over TLS with the right CA: %v", err)
	}
	bad, err := client.New(client.Config{URL: ts.URL, Token: adminToken, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.ListNetworks(context.Background()); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("over TLS with an untrusted certificate: %v, want unavailable", err)
	}
}
