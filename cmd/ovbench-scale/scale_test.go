package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/testutil"
)

// TestMain lets the test binary play the controller child, as ovbench-scale re-executes itself.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "controller" {
		if err := runChild(); err != nil {
			os.Stderr.WriteString("ovbench-scale controller: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSimulator100Hosts runs the simulator at 100 hosts with 5 endpoints each (about a minute on a
// quiet 2-core machine): the cluster converges, every probe reaches every serving host, a dead host is
// withdrawn everywhere, and the JSON line holds the figures the docs quote, with sane values.
func TestSimulator100Hosts(t *testing.T) {
	if testing.Short() {
		testutil.Skip(t, "runs 100 simulated hosts against a real controller for about a minute; not with -short")
	}
	var log bytes.Buffer
	res, err := run(context.Background(), options{hosts: 100, networks: 20, perHost: 5, probes: 6, etcd: "embedded"}, &log)
	if err != nil {
		t.Fatalf("simulation failed: %v\n%s", err, log.String())
	}
	t.Logf("%s\n%s", log.String(), table([]result{res}))
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"hosts", "endpoints", "converge_s", "add_p50_ms", "add_p99_ms", "remove_p99_ms", "controller_cpu_s",
		"controller_rss_mb", "dead_withdraw_s", "add_max_ms", "remove_p50_ms", "etcd_db_mb", "etcd_keys", "events_per_endpoint", "host_mem_kb", "program_10k_peers_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("the JSON line has no %q: %s", k, b)
		}
	}
	checks := []struct {
		name   string
		ok     bool
		detail any
	}{
		{"hosts and endpoints as asked", res.Hosts == 100 && res.Endpoints == 500, []int{res.Hosts, res.Endpoints}},
		{"converged, after creating", res.ConvergeS > 0 && res.ConvergeS >= res.CreateS, []float64{res.CreateS, res.ConvergeS}},
		{"every host has peers", res.PeersPerHost > 10, res.PeersPerHost},
		{"add percentiles ordered and under 30 s", 0 < res.AddP50 && res.AddP50 <= res.AddP99 && res.AddP99 <= res.AddMax && res.AddMax < 30000, []float64{res.AddP50, res.AddP99, res.AddMax}},
		{"remove percentiles ordered and under 30 s", 0 < res.RemoveP50 && res.RemoveP50 <= res.RemoveP99 && res.RemoveP99 <= res.RemoveMax && res.RemoveMax < 30000, []float64{res.RemoveP50, res.RemoveP99, res.RemoveMax}},
		{"the controller child's CPU and peak RSS", res.ControllerCPU > 0 && res.ControllerRSS > 10 && res.ControllerRSS < 4096, []float64{res.ControllerCPU, res.ControllerRSS}},
		{"etcd holds every endpoint", res.EtcdKeys >= int64(res.Endpoints) && res.EtcdDBMB > 0, []any{res.EtcdKeys, res.EtcdDBMB}},
		// Each new endpoint goes to the hosts serving its network, not to every host.
		{"events per endpoint: at least one, fewer than one per host", res.EventsPerEndpoint >= 1 && res.EventsPerEndpoint < float64(res.Hosts), res.EventsPerEndpoint},
		{"a host's memory for its peers", res.HostMemKB > 0 && res.BytesPerPeer > 0, []float64{res.HostMemKB, res.BytesPerPeer}},
		{"dead host withdrawn everywhere", res.DeadWithdrawS > 0 && res.DeadWithdrawS < 30 && res.DeadTotalS > res.DeadWithdrawS, []float64{res.DeadWithdrawS, res.DeadTotalS}},
		{"10,000 peers programmed from scratch", res.Program10k > 0 && res.Program10k < 10, res.Program10k},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: got %v", c.name, c.detail)
		}
	}
	if tb := table([]result{res}); !strings.Contains(tb, "| 100 x 5 ") {
		t.Errorf("the table has no row for 100 x 5:\n%s", tb)
	}
}

// TestLayout: a tenth of the networks span every host, the others a tenth of the hosts; every host's
// endpoints are all placed, and every network gets some.
func TestLayout(t *testing.T) {
	l := makeLayout(100, 100, 20)
	globals, total := 0, 0
	for n := range l.names {
		if l.global[n] {
			globals++
		}
		if l.total[n] == 0 {
			t.Errorf("network %s has no endpoints", l.names[n])
		}
		total += l.total[n]
		hosts := len(l.serving(n, -1))
		switch {
		case l.global[n] && hosts != 100:
			t.Errorf("global network %s spans %d hosts, want 100", l.names[n], hosts)
		case !l.global[n] && hosts > 10:
			t.Errorf("network %s spans %d hosts, want at most 10", l.names[n], hosts)
		}
	}
	if globals != 10 || total != 100*20 {
		t.Errorf("%d global networks and %d endpoints, want 10 and 2000", globals, total)
	}
}

// TestSimulatorSampled runs the sampled mode at 40 hosts, 5 of them simulated in full and 35 light
// (one watch stream per network): the light hosts registered, heartbeat (alive), allocated every
// endpoint (the controller stores hosts x per-host) and hold their streams (the controller counts the
// light hosts' streams plus the simulated hosts'), and the sampled hosts converge and see the probes.
func TestSimulatorSampled(t *testing.T) {
	if testing.Short() {
		testutil.Skip(t, "runs 40 hosts against a real controller; not with -short")
	}
	var log bytes.Buffer
	o := options{hosts: 40, networks: 4, perHost: 3, probes: 4, etcd: "embedded", sample: 5, lightWatch: watchPerNetwork}
	res, err := run(context.Background(), o, &log)
	if err != nil {
		t.Fatalf("simulation failed: %v\n%s", err, log.String())
	}
	t.Logf("%s\n%s", log.String(), table([]result{res}))
	l := makeLayout(o.hosts, o.networks, o.perHost)
	sampled, err := chooseSample(l, o.sample)
	if err != nil {
		t.Fatal(err)
	}
	full := map[int]bool{}
	for _, h := range sampled {
		full[h] = true
	}
	var lightStreams, fullStreams int64
	for h := range o.hosts {
		if full[h] {
			fullStreams += int64(len(l.onHost[h]))
		} else {
			lightStreams += int64(len(l.onHost[h]))
		}
	}
	checks := []struct {
		name   string
		ok     bool
		detail any
	}{
		{"sample and light watch in the result", res.Sample == 5 && res.LightWatch == watchPerNetwork && len(res.SampledFigures) > 0, []any{res.Sample, res.LightWatch, res.SampledFigures}},
		{"every host registered and alive", res.HostsRegistered == 40 && res.HostsAlive == 40, []int{res.HostsRegistered, res.HostsAlive}},
		{"every endpoint stored: hosts x per host", res.EndpointsStored == 40*3, res.EndpointsStored},
		{"the light hosts hold one stream per network they serve", res.LightStreams == lightStreams, []int64{res.LightStreams, lightStreams}},
		// The simulated hosts run the real driver: one stream per network it serves, or one per host
		// with the multiplexed watch (branch mux-watch).
		{"the controller has the light and the simulated hosts' streams open", res.WatchesOpen == lightStreams+fullStreams || res.WatchesOpen == lightStreams+int64(o.sample),
			[]int64{res.WatchesOpen, lightStreams + fullStreams, lightStreams + int64(o.sample)}},
		{"the sampled hosts converged", res.ConvergeS > 0 && res.PeersPerHost > 0, []float64{res.ConvergeS, res.PeersPerHost}},
		{"probes reached the sampled hosts", res.AddP50 > 0 && res.RemoveP50 > 0 && res.AddMax < 30000, []float64{res.AddP50, res.RemoveP50}},
		// Counted by the controller: every serving host gets the event, light or not.
		{"events per endpoint counted cluster-wide", res.EventsPerEndpoint > float64(o.sample), res.EventsPerEndpoint},
		{"dead host withdrawn by the sampled hosts", res.DeadWithdrawS > 0 && res.DeadWithdrawS < 30, res.DeadWithdrawS},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: got %v", c.name, c.detail)
		}
	}
	if tb := table([]result{res}); !strings.Contains(tb, "| 40 x 3 (") || !strings.Contains(tb, "5 sampled") {
		t.Errorf("the table's row does not say the sample:\n%s", tb)
	}
}

// TestChooseSample: every network has a sampled host; at the large layout 20 hosts do it and
// every network spanning a tenth of the hosts has two, so that probes can go to any of them; too
// small a sample is refused with the size that works.
func TestChooseSample(t *testing.T) {
	l := makeLayout(1000, 100, 100)
	s, err := chooseSample(l, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 20 {
		t.Fatalf("%d sampled hosts, want 20", len(s))
	}
	in := make([]bool, 1000)
	for _, h := range s {
		in[h] = true
	}
	for n := range l.names {
		if got := len(l.servingOf(n, -1, in)); got < 2 {
			t.Errorf("network %s has %d sampled hosts, want 2 at least", l.names[n], got)
		}
	}
	if _, err := chooseSample(makeLayout(40, 10, 3), 5); err == nil || !strings.Contains(err.Error(), "-sample") {
		t.Errorf("a sample too small to cover every network: got %v, want an error naming the -sample that works", err)
	}
}

// TestSimulatorSampledHostWatch runs the sampled mode with one multiplexed watch stream per light host
// (GET /v1/endpoints?watch=true&networks=...) and the endpoints-first bring-up (the light hosts
// allocate, then watch, then the simulated hosts attach): each light host holds exactly one stream,
// the controller stores every endpoint and the sampled hosts converge.
func TestSimulatorSampledHostWatch(t *testing.T) {
	if testing.Short() {
		testutil.Skip(t, "runs 40 hosts against a real controller; not with -short")
	}
	var log bytes.Buffer
	o := options{hosts: 40, networks: 4, perHost: 3, probes: 2, etcd: "embedded", sample: 5, lightWatch: watchPerHost, bringup: bringupEndpointsFirst}
	res, err := run(context.Background(), o, &log)
	if err != nil {
		t.Fatalf("simulation with one watch stream per light host, endpoints first: %v\n%s", err, log.String())
	}
	t.Logf("%s\n%s", log.String(), table([]result{res}))
	if res.LightStreams != 35 || res.WatchesOpen < 35+5 || res.EndpointsStored != 120 || res.ConvergeS <= 0 {
		t.Errorf("light streams %d (want 35: one per light host), controller's open streams %d (want 40 at least), endpoints %d (want 120), converged in %.1f s",
			res.LightStreams, res.WatchesOpen, res.EndpointsStored, res.ConvergeS)
	}
}
