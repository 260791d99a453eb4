package e2e

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/perfdoc"
	"github.com/ovnet/ov/internal/testutil"
)

// dnsperf's settings, the same for ov and Docker: 4 client sockets, 100 queries outstanding (the
// reference figure's), a query file of one in-network name.
var dnsperfArgs = []string{"-s", resolverAddr, "-c", "4", "-q", "100"}

// perfRun is what one resolver did under dnsperf.
type perfRun struct {
	QPS, Mean, StdDev float64 // queries/s; latency in seconds (dnsperf's figures, throughput run)
	Completed, Lost   int
	Rcodes            string
	P50, P99, Max     float64 // seconds, from the second run's per-query latencies (-v)
	VQPS              float64 // queries/s of that second run (dnsperf prints every answer)
	CPU               float64 // the resolver process's CPU during the throughput run, in cores
	Err               string  // why it could not be measured
}

// TestBenchDNS measures ov's resolver with dnsperf run in a container's network namespace (through
// nsenter) asking for a container of the same user-defined bridge network, beside Docker's embedded
// DNS measured the same way in the same run when dockerd is installed, and writes the "dns" section
// of the performance document. It runs only when OV_PERFDOC names that document (make bench);
// OV_BENCH_SECONDS sets the throughput run's length (default 15).
func TestBenchDNS(t *testing.T) {
	doc := testutil.SkipUnlessBench(t)
	testutil.RequireBinary(t, "dnsperf", "dnsperf")
	secs := 15
	if n, err := strconv.Atoi(os.Getenv("OV_BENCH_SECONDS")); err == nil && n > 0 {
		secs = n
	}
	load := loadAverage()
	l := startLab(t, "ovdnsb", "192.168.82.0/24", 1500, 1)
	ctl(t, l, "host1", "network", "create", "--subnet", "10.88.0.0/24", "benchnet")
	t.Cleanup(func() { _, _ = ctlOut(l, "host1", "network", "rm", "benchnet") })
	target := dnsRun(t, l, "host1", "target", "benchnet", nil, "busybox", sleeper...)
	asker := dnsRun(t, l, "host1", "asker", "benchnet", nil, "busybox", sleeper...)
	testutil.Eventually(t, 10*time.Second, func() error { return expectA(asker, "target", target.IP) })
	qfile := filepath.Join(tmpDir, "dnsperf-queries")
	if err := os.WriteFile(qfile, []byte("target A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ov := dnsperfIn(asker.NetNS, l.Hosts[0].Agent.PID, qfile, secs)
	if ov.Err != "" {
		t.Fatal(ov.Err)
	}
	t.Logf("ov: %+v", ov)
	dk := benchDocker(t, qfile, secs)
	t.Logf("docker: %+v", dk)
	body := dnsSection(ov, dk, secs, load+" at the start, "+loadAverage()+" at the end")
	if err := perfdoc.WriteSection(doc, "dns", body); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + body)
}

// loadAverage is the machine's 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

var (
	perfQPS     = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	perfMean    = regexp.MustCompile(`Average Latency \(s\):\s+([0-9.]+)`)
	perfStdDev  = regexp.MustCompile(`Latency StdDev \(s\):\s+([0-9.]+)`)
	perfDone    = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	perfLost    = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	perfRcodes  = regexp.MustCompile(`Response codes:\s+(.*)`)
	perfVerbose = regexp.MustCompile(`^> (\S+) \S+ \S+ ([0-9.]+)$`)
)

// dnsperfIn runs dnsperf twice in the network namespace netns: a throughput run of secs seconds
// (queries/s, mean latency, and the CPU of the process pid meanwhile) and a run of secs/2 seconds
// with -v, whose per-query latencies give the percentiles.
func dnsperfIn(netns string, pid int, qfile string, secs int) perfRun {
	var r perfRun
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return perfRun{Err: err.Error()}
	}
	start := time.Now()
	argv := append([]string{"--net=" + netns, "dnsperf", "-d", qfile, "-l", strconv.Itoa(secs)}, dnsperfArgs...)
	out, err := exec.Command("nsenter", argv...).CombinedOutput()
	wall := time.Since(start).Seconds()
	if err != nil {
		return perfRun{Err: fmt.Sprintf("dnsperf: %v\n%s", err, out)}
	}
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return perfRun{Err: err.Error()}
	}
	r.CPU = (cpu1 - cpu0) / wall
	s := string(out)
	r.QPS, r.Mean, r.StdDev = floatOf(perfQPS, s), floatOf(perfMean, s), floatOf(perfStdDev, s)
	r.Completed, r.Lost = int(floatOf(perfDone, s)), int(floatOf(perfLost, s))
	if m := perfRcodes.FindStringSubmatch(s); m != nil {
		r.Rcodes = strings.TrimSpace(m[1])
	}
	if r.QPS == 0 {
		return perfRun{Err: "dnsperf printed no figures:\n" + s}
	}

	vfile := qfile + ".verbose"
	f, err := os.Create(vfile)
	if err != nil {
		return perfRun{Err: err.Error()}
	}
	defer os.Remove(vfile)
	argv = append([]string{"--net=" + netns, "dnsperf", "-v", "-d", qfile, "-l", strconv.Itoa(max(secs/2, 2))}, dnsperfArgs...)
	cmd := exec.Command("nsenter", argv...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	f.Close()
	if err != nil {
		return perfRun{Err: fmt.Sprintf("dnsperf -v: %v", err)}
	}
	lat, vqps, err := verboseLatencies(vfile)
	if err != nil || len(lat) == 0 {
		return perfRun{Err: fmt.Sprintf("dnsperf -v: no latencies (%v)", err)}
	}
	r.VQPS = vqps
	r.P50, r.P99, r.Max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	return r
}

// verboseLatencies reads the latencies dnsperf -v printed (one "> RCODE NAME TYPE SECONDS" line per
// answer), sorted, and the run's queries/s.
func verboseLatencies(path string) ([]float64, float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var lat []float64
	var qps float64
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if m := perfVerbose.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			lat = append(lat, v)
		} else if m := perfQPS.FindStringSubmatch(line); m != nil {
			qps, _ = strconv.ParseFloat(m[1], 64)
		}
	}
	sort.Float64s(lat)
	return lat, qps, s.Err()
}

func floatOf(re *regexp.Regexp, s string) float64 {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// cpuSeconds is the user+system CPU time a process has used (/proc/PID/stat, fields 14 and 15, in
// clock ticks of 1/100 s on Linux).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("CPU of pid %d: %w", pid, err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from the 3rd (state) on
	if len(f) < 13 {
		return 0, fmt.Errorf("CPU of pid %d: short /proc/%d/stat", pid, pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil
}

// dnsSection renders the "dns" section of the performance document.
func dnsSection(ov, dk perfRun, secs int, load string) string {
	var b strings.Builder
	b.WriteString("## Embedded DNS: queries per second and latency\n\n")
	fmt.Fprintf(&b, "dnsperf 2.10 runs inside a container's network namespace (`nsenter --net`) and asks the resolver at %s for `target`, a container of the same user-defined bridge network on the same host: %s, one query line (`target A`), %d s. Queries/s, mean and standard deviation are dnsperf's, from that run; p50, p99 and max come from a second run of %d s with `-v`, where dnsperf prints the latency of every answer (sorted by the benchmark; that run's queries/s is in brackets: printing costs dnsperf time). Resolver CPU: user+system time of the resolving process (ovagent; dockerd for Docker) from /proc/PID/stat, before and after the throughput run, over its wall time (1.00 = one core). ov is measured first, then Docker (its daemon started after ov's runs). dnsperf, the resolver and the rest of the machine share 2 cores; load average: %s.\n\n",
		resolverAddr, "`dnsperf "+strings.Join(dnsperfArgs, " ")+" -l "+strconv.Itoa(secs)+"`", secs, max(secs/2, 2), load)
	b.WriteString("| resolver | queries/s | mean | stddev | p50 | p99 | max | lost | answers | resolver CPU (cores) |\n|---|---|---|---|---|---|---|---|---|---|\n")
	row := func(name string, r perfRun) {
		fmt.Fprintf(&b, "| %s | %.0f (%.0f) | %s | %s | %s | %s | %s | %d | %s | %.2f |\n", name, r.QPS, r.VQPS, ms(r.Mean), ms(r.StdDev), ms(r.P50), ms(r.P99), ms(r.Max), r.Lost, r.Rcodes, r.CPU)
	}
	row("ov (ovagent; sockets opened in the container's namespace, no NAT)", ov)
	if dk.Err == "" {
		row("Docker 20.10 embedded DNS (dockerd; iptables DNAT inside the container's namespace)", dk)
	}
	b.WriteString("\n")
	if dk.Err != "" {
		fmt.Fprintf(&b, "Docker's embedded DNS was not measured in this run: %s\n\n", dk.Err)
		fmt.Fprintf(&b, "Goal: at least 2x Docker's queries/s and a lower p99. Against the reference figure for Docker 20.10 on this machine (about 65,000 queries/s at 100 outstanding, 1.2 ms mean): %.2fx its queries/s.\n\n", ov.QPS/65000)
	} else {
		ratio := ov.QPS / dk.QPS
		verdict := "met"
		if ratio < 2 || ov.P99 >= dk.P99 {
			verdict = "not met"
		}
		fmt.Fprintf(&b, "Goal: at least 2x Docker's queries/s and a lower p99: %s (%.2fx the queries/s; p99 %s vs %s).\n\n", verdict, ratio, ms(ov.P99), ms(dk.P99))
		fmt.Fprintf(&b, "The reference figure quoted for Docker 20.10 on this machine (about 65,000 queries/s at 100 outstanding, 1.2 ms mean; how loaded the machine was then is not recorded) is above this run's: Docker reached %.0f%% of it here and ov %.2fx it. dnsperf and the resolver share the 2 cores with everything else running (load average above), so the absolute figures move with the load; the ratio of two resolvers measured in one run is the comparison.\n\n", 100*dk.QPS/65000, ov.QPS/65000)
	}
	fmt.Fprintf(&b, "_%s_\n", perfdoc.Machine())
	return b.String()
}

func ms(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	return fmt.Sprintf("%.3f ms", s*1000)
}
