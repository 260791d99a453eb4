package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
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

// staleDriver answers its networks from a copy because the controller does not answer.
type staleDriver struct {
	netDriver
	err error
}

func (d staleDriver) ListError() error { return d.err }

// A network the host does not know while the controller cannot be reached is "unavailable, try again",
// not "no such network": it may have been created a moment ago on another host.
func TestUnknownNetworkWhileControllerDown(t *testing.T) {
	down := errors.New("controller https://192.168.1.1:7443: connection refused")
	for _, tc := range []struct {
		listErr error
		want    error
	}{{down, errdefs.ErrUnavailable}, {nil, errdefs.ErrNotFound}} {
		a := &Agent{cfg: Config{Drivers: map[string]driver.NetworkDriver{
			"overlay": staleDriver{netDriver{nets: []api.Network{{Name: "front", Driver: "overlay"}}}, tc.listErr},
		}}}
		if _, _, err := a.findNetwork(context.Background(), "front"); err != nil {
			t.Fatalf("known network: %v", err)
		}
		_, _, err := a.findNetwork(context.Background(), "back")
		if !errors.Is(err, tc.want) {
			t.Errorf("list error %v: unknown network gives %v, want %v", tc.listErr, err, tc.want)
		}
		if tc.listErr != nil && !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("the error does not say why: %v", err)
		}
	}
}
