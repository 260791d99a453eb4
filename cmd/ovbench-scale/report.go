package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/ovnet/ov/internal/perfdoc"
)

// result is one run's figures; its JSON is the -json line and a row of the -rows file.
type result struct {
	Hosts             int     `json:"hosts"`
	Networks          int     `json:"networks"`
	PerHost           int     `json:"endpoints_per_host"`
	Endpoints         int     `json:"endpoints"`
	PeersPerHost      float64 `json:"peers_per_host"`
	Etcd              string  `json:"etcd"`
	CreateS           float64 `json:"create_s"`
	ConvergeS         float64 `json:"converge_s"`
	AddP50            float64 `json:"add_p50_ms"`
	AddP99            float64 `json:"add_p99_ms"`
	AddMax            float64 `json:"add_max_ms"`
	RemoveP50         float64 `json:"remove_p50_ms"`
	RemoveP99         float64 `json:"remove_p99_ms"`
	RemoveMax         float64 `json:"remove_max_ms"`
	ControllerCPU     float64 `json:"controller_cpu_s"`
	ControllerRSS     float64 `json:"controller_rss_mb"`
	EtcdCPU           float64 `json:"etcd_cpu_s,omitempty"`
	EtcdRSS           float64 `json:"etcd_rss_mb,omitempty"`
	EtcdDBMB          float64 `json:"etcd_db_mb"`
	EtcdKeys          int64   `json:"etcd_keys"`
	EventsPerEndpoint float64 `json:"events_per_endpoint"`
	HostMemKB         float64 `json:"host_mem_kb"`
	BytesPerPeer      float64 `json:"bytes_per_peer"`
	SimHeapMB         float64 `json:"sim_heap_mb"`
	SimCPU            float64 `json:"sim_converge_cpu_s"` // the simulated hosts' CPU seconds until converged
	DeadWithdrawS     float64 `json:"dead_withdraw_s"`
	GossipBoundS      float64 `json:"gossip_bound_s"`
	DeadTotalS        float64 `json:"dead_total_s"`
	Program10k        float64 `json:"program_10k_peers_s"`
	Program10kCPU     float64 `json:"program_10k_peers_cpu_s"`
	Event10kMS        float64 `json:"reconcile_10k_peers_ms"` // one more reconcile at 10,000 peers, one added
	Load1             string  `json:"load_start"`
	LoadEnd           string  `json:"load_end"`
	When              string  `json:"when"`
	Note              string  `json:"note,omitempty"`
	// Sampled mode (-sample K, 0: every host simulated in full): the figures named in SampledFigures
	// come from the K simulated hosts; the other hosts are light (light.go), holding their watch streams
	// as LightWatch says.
	Sample         int      `json:"sample"`
	LightWatch     string   `json:"light_watch,omitempty"`
	Bringup        string   `json:"bringup,omitempty"` // with Sample: watch-first or endpoints-first
	SampledFigures []string `json:"sampled_figures,omitempty"`
	LightStreams   int64    `json:"light_streams,omitempty"` // watch streams the light hosts hold
	WatchesOpen    int64    `json:"watches_open,omitempty"`  // the controller's open watch streams once converged
	// The controller's census once converged (admin API): hosts registered and alive, endpoints stored.
	HostsRegistered int `json:"hosts_registered,omitempty"`
	HostsAlive      int `json:"hosts_alive,omitempty"`
	EndpointsStored int `json:"endpoints_stored,omitempty"`
	// Stopped says why a run stopped before the end and where it stood then (a timeout, a signal, an
	// error): the figures after that point are 0 ("not measured").
	Stopped string `json:"stopped,omitempty"`
}

// table renders results as a markdown table.
func table(rs []result) string {
	var b strings.Builder
	b.WriteString("| hosts x endpoints (peers/host) | etcd | converge s (hosts' CPU s) | add p50 / p99 / max ms | remove p50 / p99 / max ms | controller CPU s / peak RSS MiB | etcd db MiB / keys | events per endpoint | host KiB for peers | dead: withdraw after verdict s (+ gossip bound = total) | 10k peers: from scratch s (CPU s) / one more ms | load avg start / end | note |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		etcd := r.Etcd
		if r.EtcdCPU > 0 {
			etcd += fmt.Sprintf(" (3 members: %.1f CPU s, %.0f MiB peak each)", r.EtcdCPU, r.EtcdRSS)
		}
		converge := fmt.Sprintf("%.1f (%.0f)", r.ConvergeS, r.SimCPU)
		switch {
		case r.ConvergeS == 0 && r.CreateS == 0:
			converge = "did not (stopped while creating)"
		case r.ConvergeS == 0:
			converge = fmt.Sprintf("did not (created in %.0f)", r.CreateS)
		}
		note := r.Note
		if r.Stopped != "" {
			note = strings.TrimSpace(note + "; stopped before the end: " + r.Stopped)
		}
		hosts := fmt.Sprintf("%d x %d (%.0f)", r.Hosts, r.PerHost, r.PeersPerHost)
		if r.Sample > 0 {
			hosts += fmt.Sprintf(", %d sampled (light watch per %s", r.Sample, r.LightWatch)
			if r.Bringup != "" {
				hosts += ", " + r.Bringup
			}
			hosts += ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.1f / %.0f | %s | %s | %s | %s | %s | %s / %s | %s |\n",
			hosts, etcd, converge,
			opt(r.AddMax, "%.0f / %.0f / %.0f", r.AddP50, r.AddP99, r.AddMax), opt(r.RemoveMax, "%.0f / %.0f / %.0f", r.RemoveP50, r.RemoveP99, r.RemoveMax),
			r.ControllerCPU, r.ControllerRSS, opt(float64(r.EtcdKeys), "%.1f / %d", r.EtcdDBMB, r.EtcdKeys), opt(r.EventsPerEndpoint, "%.1f", r.EventsPerEndpoint),
			opt(r.HostMemKB, "%.0f", r.HostMemKB), opt(r.DeadWithdrawS, "%.3f (+ %.2f = %.2f)", r.DeadWithdrawS, r.GossipBoundS, r.DeadTotalS),
			program(r), r.Load1, r.LoadEnd, note)
	}
	return b.String()
}

// program renders the 10k-peers figures; runs before they were measured in CPU seconds have the
// wall time alone.
func program(r result) string {
	switch {
	case r.Program10k == 0:
		return "not measured"
	case r.Program10kCPU == 0:
		return fmt.Sprintf("%.3f", r.Program10k)
	}
	return fmt.Sprintf("%.3f (%.2f) / %.0f", r.Program10k, r.Program10kCPU, r.Event10kMS)
}

// opt formats args, or says "not measured" when v is 0 (a run stopped before it measured them).
func opt(v float64, format string, args ...any) string {
	if v == 0 {
		return "not measured"
	}
	return fmt.Sprintf(format, args...)
}

func appendRow(path string, r result) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	b, _ := json.Marshal(r)
	_, err = fmt.Fprintf(f, "%s\n", b)
	return err
}

func readRows(path string) ([]result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rs []result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		rs = append(rs, r)
	}
	return rs, sc.Err()
}

// writeDoc writes the scale section of the performance document from every row of rows.
func writeDoc(out, rows string) error {
	rs, err := readRows(rows)
	if err != nil {
		return err
	}
	for i := range rs { // the bound as the code computes it now, for every row alike
		rs[i].GossipBoundS = round(gossipBound(rs[i].Hosts).Seconds(), 2)
		rs[i].DeadTotalS = round(rs[i].DeadWithdrawS+rs[i].GossipBoundS, 2)
	}
	var b strings.Builder
	b.WriteString("## Scale: simulated hosts against the real controller (ovbench-scale)\n\n")
	b.WriteString("`make bench-scale` (cmd/ovbench-scale): the real controller with its embedded etcd (fsync on) in a child process, and N simulated hosts in the benchmark's process, " +
		"each the real overlay driver of ovagent (registration, heartbeat, endpoint watches, desired state, the vxlan reconciler, its state file) on internal/netlink's fake kernel and fake iptables; " +
		"gossip is simulated (every host sees a death at once) and memberlist's detection bound for the cluster size is added to the dead-host time. " +
		"Layout: a tenth of the networks span every host, the others a tenth of the hosts each; each host's endpoints go round-robin over its networks. " +
		"add/remove: single endpoints created through the driver's Attach (Detach) after convergence, until every other serving host has set (deleted) its neighbour entry. " +
		"Controller CPU and peak RSS (VmHWM) are the child process's, etcd included when embedded. Host KiB for peers: heap per peer of one host's state (endpoint records, desired state, fake kernel entries) times the average peers per host. " +
		"Rows marked \"N sampled\" (-sample N) simulate N hosts in full and measure every latency, convergence and host figure on them; the other hosts are light hosts that register, heartbeat, read the host list, allocate their endpoints and read their watch streams as agents do, so that the controller, etcd and the events are the whole cluster's; \"endpoints-first\" rows bring the cluster up with every light host's endpoints allocated before the watches open (docs/scale.md, \"The sampled mode\"). " +
		"The machine is shared with other work: the load average at the start and end of each run stands beside it. What is real and what is simulated, and what the figures mean for a real cluster: docs/scale.md.\n\n")
	b.WriteString(table(rs))
	b.WriteString("\nGoals at 1,000 hosts x 100 endpoints: add p99 <= 1 s; controller peak RSS <= 1 GiB; 10,000 peers from scratch <= 1 s; dead host withdrawn everywhere <= 5 s; growth no faster than linear.\n")
	b.WriteString("\n" + perfdoc.Machine() + "\n")
	return perfdoc.WriteSection(out, "scale", b.String())
}
