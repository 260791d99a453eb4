// Command ovbench-overlay measures TCP throughput (iperf3) and ping latency between two lab hosts
// (network namespaces on an underlay bridge) over three paths, in the same run: ov's overlay (a
// vxlan.Driver per host, container namespaces on it), a VXLAN tunnel set up by hand with iproute2
// between two other namespaces on the same underlay (the reference), and the bare underlay. It writes
// the table to the "overlay" section of docs/performance.md. Run as root; it touches nothing outside
// the namespaces it creates and removes them at the end.
//
// For poking at the lab by hand: OVBENCH_HOLD=10m keeps it up that long before measuring, and
// OVBENCH_DEBUG=1 dumps links and entries of every namespace when a path does not work.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ovnet/ov/internal/perfdoc"
	"github.com/ovnet/ov/internal/vxlan"
	"github.com/ovnet/ov/internal/vxlan/vxlantest"
	"github.com/ovnet/ov/internal/wireguard"
)

func main() {
	out := flag.String("out", "docs/performance.md", "markdown file whose \"overlay\" section gets the table")
	seconds := flag.Int("seconds", 5, "duration of each iperf3 run")
	rounds := flag.Int("rounds", 3, "runs per path, interleaved; the median is reported")
	flag.BoolVar(&wgOffloads, "wg-offloads", true, "wireguard-go's TUN with IFF_VNET_HDR (TSO, GRO); false: one packet per read and write")
	flag.Parse()
	if err := run(*out, *seconds, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "ovbench-overlay:", err)
		os.Exit(1)
	}
}

// path is one way from a client namespace to a server address.
type path struct {
	name, client, server string // namespace paths
	dst                  netip.Addr
	mtu                  int
	gbps                 []float64
	rtt, p99             []float64 // µs
	cpu                  []float64 // % of a core, sender + receiver, at fixedRate
	perGB                []float64 // core-seconds per GB carried in the fixed-rate run (it may fall short of fixedRate)
}

func sh(ns string, name string, args ...string) (string, error) {
	a := append([]string{"--net=" + ns, name}, args...)
	b, err := exec.Command("nsenter", a...).CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("%s %s in %s: %v: %s", name, strings.Join(args, " "), ns, err, b)
	}
	return string(b), nil
}

// wgOffloads is the -wg-offloads flag.
var wgOffloads bool

func run(out string, seconds, rounds int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (it creates network namespaces)")
	}
	lab, err := vxlantest.NewLab(fmt.Sprintf("ovb%x", os.Getpid()&0xffff), 1500)
	if err != nil {
		return err
	}
	defer lab.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { // interrupted: still remove the namespaces
		<-sig
		lab.Close()
		os.Exit(130)
	}()
	var hosts []vxlantest.Host
	for i, name := range []string{"h0", "h1", "x0", "x1", "y0", "y1"} {
		h, err := lab.AddHost(name, netip.AddrFrom4([4]byte{192, 168, 77, byte(10 + i)}))
		if err != nil {
			return err
		}
		hosts = append(hosts, h)
	}

	// ov's overlay: one driver per host, container A on h0, B on h1.
	n := vxlan.Network{Name: "bench", VNI: 100, Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: netip.MustParseAddr("10.1.0.1")}
	ctr := map[string]string{}
	for _, c := range []string{"A", "B"} {
		if ctr[c], err = lab.NewNetns(c); err != nil {
			return err
		}
	}
	ipA, ipB := netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.1.0.3")
	states := []vxlan.State{
		{Networks: []vxlan.NetworkState{{Network: n, VTEPs: []netip.Addr{hosts[1].Addr},
			Endpoints: []vxlan.Endpoint{{ContainerID: "A", NetNSPath: ctr["A"], IfName: "eth0", IP: ipA}},
			Peers:     []vxlan.Peer{{IP: ipB, VTEP: hosts[1].Addr}}}}},
		{Networks: []vxlan.NetworkState{{Network: n, VTEPs: []netip.Addr{hosts[0].Addr},
			Endpoints: []vxlan.Endpoint{{ContainerID: "B", NetNSPath: ctr["B"], IfName: "eth0", IP: ipB}},
			Peers:     []vxlan.Peer{{IP: ipA, VTEP: hosts[0].Addr}}}}},
	}
	// ov's encrypted overlay on the same two hosts: a second network (VNI 101) through WireGuard
	// (wireguard-go on a TUN device, in this process: the kernel here has no WireGuard), container C
	// on h0 and D on h1.
	keyDir, err := os.MkdirTemp("", "ovbench-wg")
	if err != nil {
		return err
	}
	defer os.RemoveAll(keyDir)
	var tuns []*wireguard.Tunnel
	for i := range 2 {
		wc := wireguard.DefaultConfig()
		wc.LocalIP, wc.Netns, wc.KeyPath = hosts[i].Addr, hosts[i].Path, filepath.Join(keyDir, fmt.Sprint(i))
		wc.NoOffloads = !wgOffloads
		t, err := wireguard.New(wc)
		if err != nil {
			return err
		}
		defer t.Close()
		tuns = append(tuns, t)
	}
	enc := vxlan.Network{Name: "benchenc", VNI: 101, Subnet: netip.MustParsePrefix("10.2.0.0/24"), Gateway: netip.MustParseAddr("10.2.0.1"), Encrypted: true}
	for _, c := range []string{"C", "D"} {
		if ctr[c], err = lab.NewNetns(c); err != nil {
			return err
		}
	}
	ipC, ipD := netip.MustParseAddr("10.2.0.2"), netip.MustParseAddr("10.2.0.3")
	for i, c := range []struct {
		name string
		ip   netip.Addr
		peer netip.Addr
	}{{"C", ipC, ipD}, {"D", ipD, ipC}} {
		o := tuns[1-i]
		states[i].Networks = append(states[i].Networks, vxlan.NetworkState{Network: enc, VTEPs: []netip.Addr{o.Addr()},
			Endpoints: []vxlan.Endpoint{{ContainerID: c.name, NetNSPath: ctr[c.name], IfName: "eth0", IP: c.ip}},
			Peers:     []vxlan.Peer{{IP: c.peer, VTEP: o.Addr()}}})
		states[i].TunnelPeers = []vxlan.TunnelPeer{{Host: hosts[1-i].Name, PublicKey: o.PublicKey(), Endpoint: netip.AddrPortFrom(hosts[1-i].Addr, uint16(o.Port())), Addr: o.Addr()}}
	}
	for i, st := range states {
		cfg := vxlan.DefaultConfig()
		cfg.Tunnel = tuns[i]
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		cfg.HostNetns = hosts[i].Path
		cfg.LocalIP = hosts[i].Addr
		d, err := vxlan.New(cfg)
		if err != nil {
			return err
		}
		if err := d.Reconcile(context.Background(), st); err != nil {
			return err
		}
		defer d.Reconcile(context.Background(), vxlan.State{})
	}

	// The reference: a VXLAN tunnel by hand between x0 and x1, same VNI handling, same MTU.
	for i, x := range hosts[2:4] {
		other := hosts[3-i].Addr
		self := fmt.Sprintf("10.99.0.%d", i+1)
		peer := fmt.Sprintf("10.99.0.%d", 2-i)
		for _, args := range [][]string{
			{"ip", "link", "add", "vx", "mtu", "1450", "address", vxlan.MACFromIP(netip.MustParseAddr(self)).String(), "type", "vxlan", "id", "99", "dstport", "4789", "local", x.Addr.String(), "nolearning", "proxy"},
			{"ip", "addr", "add", self + "/24", "dev", "vx"},
			{"ip", "link", "set", "vx", "up"},
			{"bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx", "dst", other.String()},
			{"ip", "neigh", "add", peer, "lladdr", vxlan.MACFromIP(netip.MustParseAddr(peer)).String(), "dev", "vx", "nud", "permanent"},
		} {
			if _, err := sh(x.Path, args[0], args[1:]...); err != nil {
				return err
			}
		}
		if _, err := sh(x.Path, "bridge", "fdb", "append", vxlan.MACFromIP(netip.MustParseAddr(peer)).String(), "dev", "vx", "dst", other.String()); err != nil {
			return err
		}
	}

	// Context, not the goal's reference: the same kernel objects as ov's (container and gateway
	// macvlans in bridge mode on a VXLAN device with nolearning/proxy and static entries) made by hand between y0 and y1, with no iptables
	// rules, so that what ov itself adds on top of the plumbing shows.
	ctrY := map[int]string{}
	for i, y := range hosts[4:] {
		if ctrY[i], err = lab.NewNetns(fmt.Sprintf("Y%d", i)); err != nil {
			return err
		}
		other := hosts[5-i].Addr
		self := netip.MustParseAddr(fmt.Sprintf("10.98.0.%d", i+2))
		peer := netip.MustParseAddr(fmt.Sprintf("10.98.0.%d", 3-i))
		for _, args := range [][]string{
			{"ip", "link", "add", "vx", "mtu", "1450", "type", "vxlan", "id", "98", "dstport", "4789", "local", y.Addr.String(), "nolearning", "proxy"},
			{"ip", "link", "set", "vx", "up"},
			{"ip", "link", "add", "link", "vx", "name", "gw", "mtu", "1450", "type", "macvlan", "mode", "bridge"},
			{"ip", "addr", "add", "10.98.0.1/24", "dev", "gw"},
			{"ip", "link", "set", "gw", "up"},
			{"ip", "link", "add", "link", "vx", "name", "eth0", "netns", ctrY[i], "mtu", "1450", "address", vxlan.MACFromIP(self).String(), "type", "macvlan", "mode", "bridge"},
			{"bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx", "dst", other.String()},
			{"bridge", "fdb", "append", vxlan.MACFromIP(peer).String(), "dev", "vx", "dst", other.String()},
			{"ip", "neigh", "add", peer.String(), "lladdr", vxlan.MACFromIP(peer).String(), "dev", "vx", "nud", "permanent"},
		} {
			if _, err := sh(y.Path, args[0], args[1:]...); err != nil {
				return err
			}
		}
		for _, args := range [][]string{
			{"ip", "addr", "add", self.String() + "/24", "dev", "eth0"},
			{"ip", "link", "set", "eth0", "up"},
		} {
			if _, err := sh(ctrY[i], args[0], args[1:]...); err != nil {
				return err
			}
		}
	}

	paths := []*path{
		{name: "ov overlay (container to container, 2 hosts)", client: ctr["A"], server: ctr["B"], dst: ipB, mtu: 1450},
		{name: "VXLAN by hand (iproute2, 2 namespaces)", client: hosts[2].Path, server: hosts[3].Path, dst: netip.MustParseAddr("10.99.0.2"), mtu: 1450},
		{name: "bare underlay (no tunnel)", client: hosts[0].Path, server: hosts[1].Path, dst: hosts[1].Addr, mtu: 1500},
		{name: "ov's topology by hand (macvlan on VXLAN; no iptables)", client: ctrY[0], server: ctrY[1], dst: netip.MustParseAddr("10.98.0.3"), mtu: 1450},
		{name: "ov encrypted overlay (WireGuard: wireguard-go on TUN)", client: ctr["C"], server: ctr["D"], dst: ipD, mtu: 1370},
	}
	loadavg := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		loadavg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	for _, p := range paths { // warm up and check the path works
		var err error
		for range 5 {
			if err = vxlantest.Ping(p.client, p.dst, 84, 3*time.Second); err == nil {
				break
			}
		}
		if err != nil {
			if os.Getenv("OVBENCH_DEBUG") != "" {
				for _, h := range hosts {
					o1, _ := sh(h.Path, "ip", "-d", "link")
					o2, _ := sh(h.Path, "ip", "neigh")
					o3, _ := sh(h.Path, "bridge", "fdb")
					fmt.Fprintln(os.Stderr, h.Name, o1, o2, o3)
				}
			}
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	if hold, _ := time.ParseDuration(os.Getenv("OVBENCH_HOLD")); hold > 0 { // for poking at the lab by hand
		fmt.Fprintf(os.Stderr, "lab %s ready; holding %v\n", lab.Prefix, hold)
		time.Sleep(hold)
	}
	// Runs are interleaved, and the order of the paths alternates between rounds, so that the load of
	// a shared machine falls on every path alike; the goal is judged on the median of per-round ratios.
	var ratios, same, encRatios []float64 // ov / hand VXLAN, ov / ov's topology by hand, encrypted / ov, per round
	for r := range rounds {
		order := slices.Clone(paths)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range order {
			g, _, err := iperf(p, seconds, "")
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			self := selfCPU()
			at, cpu, err := iperf(p, seconds, fixedRate)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			cpu += (selfCPU() - self) / float64(seconds) * 100 // wireguard-go runs in this process
			p.perGB = append(p.perGB, cpu/100/max(at/8, 1e-6))
			p.cpu = append(p.cpu, cpu)
			rtt, p99, err := pingRTT(p)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			p.gbps, p.rtt, p.p99 = append(p.gbps, g), append(p.rtt, rtt), append(p.p99, p99)
			fmt.Fprintf(os.Stderr, "round %d %-45s %6.2f Gbit/s  cpu at %s %5.1f%%  rtt median %4.0f µs p99 %5.0f µs\n", r+1, p.name, g, fixedRate, cpu, rtt, p99)
		}
		ratios = append(ratios, paths[0].gbps[r]/paths[1].gbps[r])
		same = append(same, paths[0].gbps[r]/paths[3].gbps[r])
		encRatios = append(encRatios, paths[4].gbps[r]/paths[0].gbps[r])
	}
	ref := median(paths[1].gbps)
	var b strings.Builder
	fmt.Fprintf(&b, "## Overlay throughput and latency\n\n")
	fmt.Fprintf(&b, "iperf3 TCP, one stream, %d s per run, as fast as it goes (throughput) and at a fixed rate (CPU use of sender and receiver, as iperf3 reports it: the cost of the path, less sensitive than throughput to other load on the machine); ping RTT: median and 99th percentile of 1000 sequential 84-byte ICMP echoes; medians of %d interleaved rounds (path order alternating). Two hosts are network namespaces on one underlay bridge (MTU 1500); the overlay path crosses container macvlan, VXLAN, underlay, VXLAN, container macvlan, with ov's iptables chains in place (the tunnel packets pass its VXLAN ingress filter: the raw PREROUTING guard with NOTRACK, then the allowlist of member VTEPs in INPUT, one rule here since the other host serves every VNI; NOTRACK in raw OUTPUT; traffic within a network reaches no other rule), FORWARD policy ACCEPT and br_netfilter on. Load average at the start: %s.\n\n", seconds, rounds, loadavg)
	fmt.Fprintf(&b, "| path | MTU | TCP throughput (Gbit/s) | vs VXLAN by hand | CPU at %sbit/s (%% of a core, both ends) | ping RTT median (µs) | ping RTT p99 (µs) |\n|---|---|---|---|---|---|---|\n", fixedRate)
	for _, p := range paths {
		fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.1f | %.0f | %.0f |\n", p.name, p.mtu, median(p.gbps), median(p.gbps)/ref, median(p.cpu), median(p.rtt), median(p.p99))
	}
	ratio := median(ratios)
	verdict := "met"
	if ratio < 0.95 {
		verdict = "NOT met"
	}
	fmt.Fprintf(&b, "\nGoal: ov overlay >= 0.95 x VXLAN by hand: %s (median of the per-round ratios: %.2f; per round: %s).\n", verdict, ratio, fmtList(ratios))
	fmt.Fprintf(&b, "Against the same topology made by hand without iptables (what ov's own rules and choices cost): %.2f (per round: %s).\n\n%s\n", median(same), fmtList(same), perfdoc.Machine())
	fmt.Print(b.String())
	if err := perfdoc.WriteSection(out, "overlay", b.String()); err != nil {
		return err
	}
	return writeEncryption(out, paths, encRatios, seconds, rounds, loadavg)
}

// iperf runs one iperf3 TCP stream for seconds (at most rate, e.g. "1G", or as fast as it goes when
// rate is "") and returns the received throughput in Gbit/s and the CPU use of sender and receiver
// together, in percent of one core.
// fixedRate is the rate at which the CPU cost of each path is compared.
const fixedRate = "1G"

func iperf(p *path, seconds int, rate string) (gbps, cpu float64, err error) {
	srv := exec.Command("nsenter", "--net="+p.server, "iperf3", "-s", "-1", "-p", "5201")
	if err := srv.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	args := []string{"-c", p.dst.String(), "-p", "5201", "-t", strconv.Itoa(seconds), "-J"}
	if rate != "" {
		args = append(args, "-b", rate)
	}
	var out string
	for range 20 { // the server needs a moment to listen
		time.Sleep(100 * time.Millisecond)
		if out, err = sh(p.client, "iperf3", args...); err == nil {
			break
		}
	}
	if err != nil {
		return 0, 0, err
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			CPU struct {
				Host   float64 `json:"host_total"`
				Remote float64 `json:"remote_total"`
			} `json:"cpu_utilization_percent"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return 0, 0, fmt.Errorf("iperf3 output: %w", err)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, res.End.CPU.Host + res.End.CPU.Remote, nil
}

// selfCPU is the CPU time this process used so far (wireguard-go runs in it), in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// writeEncryption writes the "encryption" section: the encrypted overlay beside the plain overlay
// and the bare underlay of the same run (paths 4, 0 and 2).
func writeEncryption(out string, paths []*path, ratios []float64, seconds, rounds int, loadavg string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## Encrypted overlay (WireGuard) throughput, CPU and latency\n\n")
	fmt.Fprintf(&b, "Measured in the same run as the overlay section (iperf3 TCP, one stream, %d s per run, %d interleaved rounds, medians): an encrypted network (VXLAN inside WireGuard; wireguard-go on a TUN device with its offloads, in the benchmark's process, as the agent runs it where the kernel has no WireGuard) beside ov's plain overlay and the bare underlay between the same two hosts. CPU at %sbit/s adds to iperf3's figure the CPU time of the process running wireguard-go over the run (one process for both ends); CPU per GB divides it by what that run carried, which for a path slower than the rate is its full speed. Load average at the start: %s.\n\n", seconds, rounds, fixedRate, loadavg)
	fmt.Fprintf(&b, "| path | MTU | TCP throughput (Gbit/s) | vs plain overlay | CPU at %sbit/s (%% of a core) | CPU per GB carried (core-seconds) | ping RTT median (µs) | ping RTT p99 (µs) |\n|---|---|---|---|---|---|---|---|\n", fixedRate)
	plain := median(paths[0].gbps)
	for _, i := range []int{4, 0, 2} {
		p := paths[i]
		cpu := median(p.cpu)
		fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.1f | %.2f | %.0f | %.0f |\n", p.name, p.mtu, median(p.gbps), median(p.gbps)/plain, cpu, median(p.perGB), median(p.rtt), median(p.p99))
	}
	ratio := median(ratios)
	verdict := "met"
	if ratio < 0.5 {
		verdict = "NOT met"
	}
	fmt.Fprintf(&b, "\nGoal: encrypted overlay >= 0.5 x plain overlay: %s (median of the per-round ratios: %.2f; per round: %s). See docs/encryption.md for where the time goes.\n\n%s\n", verdict, ratio, fmtList(ratios), perfdoc.Machine())
	fmt.Print(b.String())
	return perfdoc.WriteSection(out, "encryption", b.String())
}

// pingRTT returns the median and 99th percentile round-trip time of 1000 sequential pings, in µs.
func pingRTT(p *path) (med, p99 float64, err error) {
	rtts, err := vxlantest.PingRTTs(p.client, p.dst, 1000)
	if err != nil {
		return 0, 0, err
	}
	slices.Sort(rtts)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return us(rtts[len(rtts)/2]), us(rtts[len(rtts)*99/100]), nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func fmtList(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strings.Join(s, " ")
}
