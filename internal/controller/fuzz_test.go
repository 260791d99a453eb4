package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"github.com/ovnet/ov/api"
)

// fuzzRoutes are the controller's API calls that decode a request body.
var fuzzRoutes = []struct{ method, path string }{
	{http.MethodPost, "/v1/networks"},
	{http.MethodPut, "/v1/networks/%s"},
	{http.MethodPost, "/v1/networks/%s/endpoints"},
	{http.MethodPost, "/v1/hosts"},
	{http.MethodPost, "/v1/hosts/%s/heartbeat"},
	{http.MethodPost, "/v1/hosts/%s/reconcile"},
}

// FuzzAPIRequest sends any body (and path name) to every API call of a real controller (embedded etcd)
// that decodes one, with the admin, join or a host's token. The controller never fails with a 5xx or a
// dropped connection (a panic), every refusal is an api.Error with a code and a message, and whatever
// was accepted, no address of network "front" is held twice or lies outside its subnet.
func FuzzAPIRequest(f *testing.F) {
	s, _ := embeddedController(f)
	ctx := context.Background()
	if _, err := s.Admin.CreateNetwork(ctx, api.Network{Name: "front", Driver: api.DriverOverlay, Subnet: "10.77.0.0/24"}); err != nil {
		f.Fatal(err)
	}
	h1, err := s.Join.RegisterHost(ctx, api.Host{Name: "h1", Address: "192.0.2.1"})
	if err != nil {
		f.Fatal(err)
	}
	subnet := netip.MustParsePrefix("10.77.0.0/24")
	tokens := []string{adminToken, joinToken, h1.Token, "wrong-token-0123456789"}
	seeds := []struct {
		route byte
		name  string
		body  string
	}{
		{0, "", `{"name":"n1","subnet":"10.78.0.0/24"}`},
		{0, "", `{"name":"n2","driver":"bridge"}`},
		{1, "front", `{"mtu":1400,"labels":{"a":"b"}}`},
		{1, "front", `{"name":"other"}`},
		{2, "front", `{"host":"h1","container":"c1"}`},
		{2, "front", `{"host":"h1","container":"c2","ip":"10.77.0.9"}`},
		{2, "front", `{"host":"h1","container":"c3","ip":"10.77.1.9"}`},
		{3, "", `{"name":"h2","address":"192.0.2.2","labels":{"rack":"r1"}}`},
		{4, "h1", `{}`},
		{5, "h1", `{"endpoints":[{"network":"front","host":"h1","container":"c1","ip":"10.77.0.2"}]}`},
		{5, "h1", `{"endpoints":[{"network":"front","host":"h2","container":"c9","ip":"10.77.0.200"}]}`},
		{2, "front", `{"host":"h1","container":"c1"`},
		{0, "", `[]`},
	}
	for _, sd := range seeds {
		for tok := byte(0); tok < 3; tok++ {
			f.Add(sd.route, tok, sd.name, []byte(sd.body))
		}
	}
	f.Fuzz(func(t *testing.T, route, tok byte, name string, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		path := rt.path
		if bytes.Contains([]byte(path), []byte("%s")) {
			path = string(bytes.Replace([]byte(path), []byte("%s"), []byte(url.PathEscape(name)), 1))
		}
		req, err := http.NewRequestWithContext(ctx, rt.method, s.URL+path, bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		req.Header.Set("Authorization", "Bearer "+tokens[int(tok)%len(tokens)])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s %q: %v (the handler panicked?)", rt.method, path, body, err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s %q: %s %s", rt.method, path, body, resp.Status, answer)
		}
		if resp.StatusCode >= 400 {
			var e api.Error
			if err := json.Unmarshal(answer, &e); err != nil || e.Code == "" || e.Message == "" {
				t.Fatalf("%s %s %q: %s with an answer that is not an API error: %s", rt.method, path, body, resp.Status, answer)
			}
		}
		eps, _, err := s.Admin.ListEndpoints(ctx, "front")
		if err != nil {
			t.Fatalf("list endpoints of front: %v", err)
		}
		held := map[string]api.Endpoint{}
		for _, ep := range eps {
			a, err := netip.ParseAddr(ep.IP)
			if err != nil || !subnet.Contains(a) {
				t.Fatalf("after %s %s %q: front holds %+v, outside %s", rt.method, path, body, ep, subnet)
			}
			if o, ok := held[ep.IP]; ok {
				t.Fatalf("after %s %s %q: %s held twice: %+v and %+v", rt.method, path, body, ep.IP, o, ep)
			}
			held[ep.IP] = ep
		}
	})
}
