package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
)

// netDriver is a network driver with fixed networks; it reports a data plane when dp is set.
type netDriver struct {
	driver.NetworkDriver // unused methods
	nets                 []api.Network
}

func (d netDriver) Networks(context.Context) ([]api.Network, error) { return d.nets, nil }

type reportingDriver struct {
	netDriver
	dp map[string]*api.NetworkDataplane
}

func (d reportingDriver) NetworkDataplane(network string) *api.NetworkDataplane { return d.dp[network] }

// GET /v1/networks/{name} (ovctl network inspect) carries the host's data plane of networks whose
// driver reports one, left-out entries included; other networks have none.
func TestNetworkInspectShowsDataplane(t *testing.T) {
	since := time.Date(2026, 12, 3, 7, 40, 0, 0, time.UTC)
	dp := &api.NetworkDataplane{Host: "host1", Active: true, Endpoints: 1, Peers: 2, VTEPs: 2, ProblemsDetected: 2, Problems: []api.DataplaneProblem{
		{Kind: api.DataplanePeer, Entry: "10.1.0.9 on 192.168.1.12", Reason: "its address 10.1.0.9 is also claimed by peer 10.1.0.9 on 192.168.1.13", Since: since},
	}}
	a := &Agent{cfg: Config{Drivers: map[string]driver.NetworkDriver{
		"overlay": reportingDriver{netDriver{nets: []api.Network{{Name: "front", Driver: "overlay"}}}, map[string]*api.NetworkDataplane{"front": dp}},
		"bridge":  netDriver{nets: []api.Network{{Name: "local", Driver: "bridge"}}},
	}}}
	mux := http.NewServeMux()
	a.networkRoutes(mux, "/v1")
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, tc := range []struct {
		name string
		want *api.NetworkDataplane
	}{{"front", dp}, {"local", nil}} {
		resp, err := http.Get(srv.URL + "/v1/networks/" + tc.name)
		if err != nil {
			t.Fatal(err)
		}
		var n api.Network
		err = json.NewDecoder(resp.Body).Decode(&n)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", tc.name, resp.StatusCode, err)
		}
		if diff := cmp.Diff(tc.want, n.Dataplane); diff != "" {
			t.Errorf("%s: dataplane (-want +got):\n%s", tc.name, diff)
		}
	}
}
