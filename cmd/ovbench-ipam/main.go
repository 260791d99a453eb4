// Command ovbench-ipam measures address allocations per second through the controller API with 1, 10
// and 50 concurrent clients, beside the rate of bare etcd transactions of the same shape (the
// create-if-absent transaction an allocation commits) against the same etcd in the same run, and writes
// the "ipam" section of docs/performance.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/perfdoc"
)

func main() {
	out := flag.String("out", "docs/performance.md", "markdown file whose \"ipam\" section is replaced")
	dur := flag.Duration("duration", time.Second, "measuring time per round")
	rounds := flag.Int("rounds", 5, "rounds per row, alternating API and bare etcd")
	fsync := flag.Bool("fsync", false, "let etcd fsync its log (the production setting; slow on most disks)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.StringVar(&only, "only", "", "api or bare: measure that side alone (for profiling; the document is not written)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(*out, *dur, *rounds, *fsync); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "ovbench-ipam:", err)
		os.Exit(1)
	}
}

// only, when set, names the one side measured.
var only string

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func run(out string, dur time.Duration, rounds int, fsync bool) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "ovbench-ipam-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The embedded etcd serves clients on its unix socket (DATA_DIR/etcd/client.sock), as the controller runs it.
	e, err := store.StartEmbedded(store.EmbedConfig{Dir: filepath.Join(dir, "etcd"), UnsafeNoFsync: !fsync, Log: log})
	if err != nil {
		return err
	}
	defer e.Close()
	st, err := store.Open(store.Config{Endpoints: []string{e.ClientURL()}, Log: log})
	if err != nil {
		return err
	}
	defer st.Close()
	cfg := controller.DefaultConfig()
	cfg.Store, cfg.AdminToken, cfg.JoinToken, cfg.Log = st, "bench-admin-token-0123", "bench-join-token-01234", log
	ctl, err := controller.New(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = ctl.Run(ctx) }()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var conns atomic.Int64 // connections the API server accepted: the clients must keep theirs alive
	srv := &http.Server{Handler: ctl.Handler(), ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	cli, err := client.New(client.Config{URL: "http://" + l.Addr().String(), Token: cfg.AdminToken, MaxConns: 128})
	if err != nil {
		return err
	}
	reg, err := cli.RegisterHost(ctx, api.Host{Name: "bench", Address: "192.168.99.1"})
	if err != nil {
		return err
	}
	// The host heartbeats as its agent does (every 2s, the agent's default) while the API allocates
	// for it: liveness must not make allocations retry.
	go func() {
		hb := cli.WithToken(reg.Token)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_, _ = hb.Heartbeat(ctx, "bench")
			}
		}
	}()
	h, err := st.GetHost(ctx, "bench")
	if err != nil {
		return err
	}
	echo, err := echoClient(cfg.AdminToken)
	if err != nil {
		return err
	}
	var floors []string
	var floor result

	loadStart := loadavg()
	var rows []string
	var last50, lastRatio float64
	for i, conc := range []int{1, 10, 50} {
		// API: a fresh /16 network per row; bare etcd: the same transaction, addresses from a shared
		// counter, on another /16. Rounds alternate between the two so that the machine's load
		// changes affect both alike; the table shows the median round of each.
		name := fmt.Sprintf("api%d", conc)
		if _, err := cli.CreateNetwork(ctx, api.Network{Name: name, Subnet: fmt.Sprintf("10.%d.0.0/16", 200+i)}); err != nil {
			return err
		}
		bname := fmt.Sprintf("bare%d", conc)
		n, err := st.CreateNetwork(ctx, api.Network{Name: bname, Driver: api.DriverOverlay, Subnet: fmt.Sprintf("10.%d.0.0/16", 210+i)}, cfg.Pools)
		if err != nil {
			return err
		}
		var next atomic.Uint32
		base := n.Range.First.As4()
		var apiRates, bareRates []float64
		var apiLats, bareLats, apiCPU, bareCPU []time.Duration
		for r := 0; r < rounds; r++ {
			res, err := measure(dur*time.Duration(b2i(only != "bare")), conc, func(w, k int) error {
				_, err := cli.Allocate(ctx, api.Endpoint{Network: name, Host: "bench", Container: fmt.Sprintf("r%d-c%d-%d", r, w, k)})
				return err
			})
			if err != nil {
				return fmt.Errorf("API with %d clients: %w", conc, err)
			}
			apiRates, apiLats, apiCPU = append(apiRates, res.rate), append(apiLats, res.p50), append(apiCPU, res.cpu)
			res, err = measure(dur*time.Duration(b2i(only != "api")), conc, func(w, k int) error {
				v := next.Add(1)
				ip := netip.AddrFrom4([4]byte{base[0], base[1], base[2] + byte(v>>8), base[3] + byte(v)})
				return st.BareAllocate(ctx, n, h, fmt.Sprintf("c%d", v), ip)
			})
			if err != nil {
				return fmt.Errorf("bare etcd with %d clients: %w", conc, err)
			}
			bareRates, bareLats, bareCPU = append(bareRates, res.rate), append(bareLats, res.p50), append(bareCPU, res.cpu)
		}
		if only == "" {
			// The HTTP floor: the same client and request against a handler that decodes the
			// endpoint and answers it, with no controller and no etcd behind it.
			res, err := measure(dur, conc, func(w, k int) error {
				_, err := echo.Allocate(ctx, api.Endpoint{Network: name, Host: "bench", Container: fmt.Sprintf("e%d-%d", w, k)})
				return err
			})
			if err != nil {
				return fmt.Errorf("HTTP floor with %d clients: %w", conc, err)
			}
			fmt.Fprintf(os.Stderr, "ipam: %2d clients: HTTP floor %.0f/s (p50 %v, CPU %v/op)\n", conc, res.rate, res.p50, res.cpu)
			floor = res
		}
		apiRate, bareRate := median(apiRates), median(bareRates)
		apiLat, bareLat := median(apiLats), median(bareLats)
		apiC, bareC := median(apiCPU), median(bareCPU)
		if only == "" {
			floors = append(floors, fmt.Sprintf("| %d | %.0f | %v | %v | %v | %.2f |", conc, floor.rate, floor.p50.Round(time.Microsecond), floor.cpu.Round(time.Microsecond),
				(apiC-bareC-floor.cpu).Round(time.Microsecond), float64(bareC)/float64(bareC+floor.cpu)))
		}
		fmt.Fprintf(os.Stderr, "ipam: %2d clients: API %.0f/s (p50 %v, CPU %v/op), bare etcd %.0f/s (p50 %v, CPU %v/op); rounds API %.0f bare %.0f; API connections so far %d\n",
			conc, apiRate, apiLat, apiC, bareRate, bareLat, bareC, apiRates, bareRates, conns.Load())
		rows = append(rows, fmt.Sprintf("| %d | %.0f | %v | %v | %.0f | %v | %v | %.2f |", conc, apiRate, apiLat.Round(10*time.Microsecond), apiC.Round(time.Microsecond),
			bareRate, bareLat.Round(10*time.Microsecond), bareC.Round(time.Microsecond), apiRate/bareRate))
		last50, lastRatio = apiRate, apiRate/bareRate
	}
	if only != "" {
		return nil
	}
	fs := "unsafe-no-fsync (WAL not synced; both sides)"
	if fsync {
		fs = "fsync on (etcd default; both sides)"
	}
	body := strings.Join([]string{
		"## IPAM: address allocations through the controller",
		"",
		"`ovbench-ipam` (make bench): one controller with its embedded single-member etcd, " + fs + ", on loopback.",
		"API: `POST /v1/networks/N/endpoints` through `controller/client` (HTTP/1.1 keep-alive, JSON, admin token), each a new owner in a /16;",
		"the controller picks the candidate from its watch cache and commits one transaction (create-if-absent on the address and owner keys, guarded by the network's create revision and the host record's revision, cursor bump); allocations that arrive while one of the network is on its way to etcd are grouped into one such transaction, every allocation with its own guards (docs/controller.md, Group commit).",
		"Meanwhile the host heartbeats every 2s, as its agent does (liveness is an etcd lease renewal, which leaves the host record alone).",
		"Reference: the same transaction sent straight to the same etcd with the etcd Go client, same concurrency, same run.",
		fmt.Sprintf("Each row: %d rounds of %v for each side, alternating; the median round of each side is shown.", rounds, dur),
		"CPU/op: the CPU time of the whole process (clients, controller and etcd, which share it) per operation, median round; on a shared machine it moves less with the load than the rates, and API minus bare is what the HTTP API adds to an allocation.",
		"",
		"| concurrent clients | API allocations/s | API p50 latency | API CPU/op | bare etcd txns/s | bare p50 latency | bare CPU/op | API / bare |",
		"|---:|---:|---:|---:|---:|---:|---:|---:|",
		strings.Join(rows, "\n"),
		"",
		"Where the API's time goes: the HTTP floor is the same client and request against a handler on the same kind of server that decodes the endpoint and answers it, with no controller and no etcd behind it (one round per row, after the others).",
		"What is left of the API's CPU/op after the bare transaction's and the floor's is the controller's own work (token check, decoding, cache, the store's request timeout, encoding) and what running them together costs;",
		"bare / (bare + floor) is the ratio the API would reach on CPU alone if that were nothing.",
		"",
		"| concurrent clients | HTTP floor requests/s | floor p50 latency | floor CPU/op | API - bare - floor CPU/op | bare / (bare + floor) CPU |",
		"|---:|---:|---:|---:|---:|---:|",
		strings.Join(floors, "\n"),
		"",
		fmt.Sprintf("Goals with 50 clients: >= 2000 allocations/s: %s (%.0f/s); >= 0.8 x bare etcd: %s (%.3f).", met(last50 >= 2000), last50, met(lastRatio >= 0.8), lastRatio),
		"",
		"Load average (1 min) before and after the run: " + loadStart + " and " + loadavg() + "; the machine is shared, and under load both columns drop alike (the ratio holds better than the rates).",
		"",
		"Machine: " + perfdoc.Machine(),
	}, "\n")
	return perfdoc.WriteSection(out, "ipam", body)
}

// echoClient starts an HTTP server whose every answer is the endpoint it was sent (decoded, its
// address filled in, encoded) and returns a controller client of it: the cost of HTTP and JSON
// alone, the floor under the API's.
func echoClient(token string) (*client.Client, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ep api.Endpoint
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&ep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ep.IP, ep.Created, ep.Revision = "10.200.0.1", time.Now().UTC(), 1
		b, _ := json.Marshal(ep)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(l) }()
	return client.New(client.Config{URL: "http://" + l.Addr().String(), Token: token, MaxConns: 128})
}

// result is one round of measure.
type result struct {
	rate float64       // operations per second
	p50  time.Duration // median latency
	cpu  time.Duration // CPU time of the whole process (clients, controller, etcd) per operation
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs op from conc goroutines for dur and returns operations per second, the median
// latency and the process's CPU time per operation.
func measure(dur time.Duration, conc int, op func(worker, k int) error) (result, error) {
	var wg sync.WaitGroup
	var count atomic.Int64
	var firstErr atomic.Value
	lats := make([][]time.Duration, conc)
	cpu0 := cpuTime()
	start := time.Now()
	deadline := start.Add(dur)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; time.Now().Before(deadline); k++ {
				t0 := time.Now()
				if err := op(w, k); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	if err, ok := firstErr.Load().(error); ok {
		return result{}, err
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	n := max(count.Load(), 1)
	return result{rate: float64(count.Load()) / elapsed.Seconds(), p50: median(all), cpu: cpu / time.Duration(n)}, nil
}

func median[T float64 | time.Duration](d []T) T {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// loadavg returns the 1-minute load average, or "?".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
