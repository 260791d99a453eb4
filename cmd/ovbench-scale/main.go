// Command ovbench-scale drives the real controller (and its etcd) with N simulated hosts, each the
// real overlay driver of ovagent on a fake kernel, and measures how ov grows: convergence, the time a
// new endpoint takes to reach every host serving its network, the controller's CPU and memory, etcd's
// size, events per endpoint, a host's memory for its peers, a dead host's withdrawal and the time to
// program 10,000 peers from scratch. See docs/scale.md for what is real and what is simulated.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	if os.Getenv(childEnv) == "controller" {
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, "ovbench-scale controller:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.hosts, "hosts", 100, "simulated hosts")
	flag.IntVar(&o.networks, "networks", 100, "overlay networks: a tenth span every host, the rest a tenth of the hosts each")
	flag.IntVar(&o.perHost, "endpoints-per-host", 10, "endpoints (containers) per host, spread over the networks the host is on")
	flag.BoolVar(&o.json, "json", false, "print one JSON object as the last line of output")
	flag.StringVar(&o.etcd, "etcd", "embedded", "embedded (inside the controller process) or external (a 3-member etcd cluster of /usr/bin/etcd on loopback)")
	flag.IntVar(&o.probes, "probes", 20, "single endpoints added (then removed) after convergence, for the latency percentiles")
	flag.StringVar(&o.out, "out", "", "markdown file to add this run's row to (docs/performance.md), in the section of the runs listed by -rows")
	flag.StringVar(&o.rows, "rows", "", "JSON lines file of earlier runs' results: this run's result is appended and the table written to -out holds them all")
	flag.StringVar(&o.note, "note", "", "a note for this run's row in the table (e.g. before/after a fix)")
	flag.StringVar(&o.dir, "dir", "", "work directory (state files, etcd data); default a new temporary directory, removed at the end")
	flag.IntVar(&o.sample, "sample", 0, "simulate only this many hosts in full (real driver, fake kernel: the latencies are theirs); the others are light hosts that register, heartbeat, allocate and hold their watch streams without a data plane. 0: every host in full")
	flag.StringVar(&o.bringup, "bringup", bringupWatchFirst, "with -sample, the order of the bring-up: watch-first (the simulated hosts attach, then each light host allocates its endpoints and opens its watch, as agents do when containers start) or endpoints-first (the light hosts allocate every endpoint, then open their watches and get snapshots, then the simulated hosts attach: a cluster whose agents reconnect to a store that holds every endpoint; the events of the bring-up are not fanned out to the light hosts)")
	flag.StringVar(&o.lightWatch, "light-watch", watchPerHost, "the light hosts' endpoint watch: network (one stream per network served, as today's agents) or host (one multiplexed stream per host: GET /v1/endpoints?watch=true&networks=...)")
	flag.DurationVar(&o.timeout, "timeout", 0, "stop the run after this long, printing where it stood (the controller's CPU and RSS at the stop); 0: none")
	flag.BoolVar(&o.verbose, "v", false, "log the simulated hosts' warnings to stderr")
	cpuprofile := flag.String("cpuprofile", "", "write the simulator's CPU profile here")
	ctlProfile := flag.String("controller-cpuprofile", "", "write the controller child's CPU profile here (with the embedded etcd, etcd's work is in it)")
	docOnly := flag.Bool("doc-only", false, "run nothing: write the -out section from the -rows file")
	flag.Parse()
	if *docOnly {
		if err := writeDoc(o.out, o.rows); err != nil {
			fmt.Fprintln(os.Stderr, "ovbench-scale:", err)
			os.Exit(1)
		}
		return
	}
	if *ctlProfile != "" {
		_ = os.Setenv(childProfEnv, *ctlProfile) // the child inherits the environment
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("-timeout %v", o.timeout))
		defer cancel()
	}
	res, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ovbench-scale:", err, context.Cause(ctx))
		if res.Stopped == "" {
			return
		}
		// Stopped on the way: the figures up to there, for the record (not added to -rows).
		fmt.Print(table([]result{res}))
		if o.json {
			b, _ := json.Marshal(res)
			fmt.Println(string(b))
		}
		return
	}
	fmt.Print(table([]result{res}))
	if o.rows != "" {
		if err := appendRow(o.rows, res); err != nil {
			fmt.Fprintln(os.Stderr, "ovbench-scale:", err)
			os.Exit(1)
		}
		if o.out != "" {
			if err := writeDoc(o.out, o.rows); err != nil {
				fmt.Fprintln(os.Stderr, "ovbench-scale:", err)
				os.Exit(1)
			}
		}
	}
	if o.json {
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	}
}

type options struct {
	hosts, networks, perHost, probes int
	sample                           int
	json, verbose                    bool
	etcd, out, rows, note, dir       string
	lightWatch, bringup              string
	timeout                          time.Duration
}

func (o options) validate() error {
	switch {
	case o.hosts < 2:
		return fmt.Errorf("-hosts %d: at least 2", o.hosts)
	case o.networks < 1 || o.networks > 120:
		return fmt.Errorf("-networks %d: 1-120 (each gets a /16 of 10.0.0.0/9)", o.networks)
	case o.perHost < 1:
		return fmt.Errorf("-endpoints-per-host %d: at least 1", o.perHost)
	case o.etcd != "embedded" && o.etcd != "external":
		return fmt.Errorf("-etcd %q: embedded or external", o.etcd)
	case o.sample < 0 || o.sample == 1 || o.sample > o.hosts:
		return fmt.Errorf("-sample %d: 0 (every host in full) or 2-%d (the probes need two simulated hosts on a network)", o.sample, o.hosts)
	case o.sample > 0 && o.lightWatch != watchPerNetwork && o.lightWatch != watchPerHost:
		return fmt.Errorf("-light-watch %q: network or host", o.lightWatch)
	case o.bringup != "" && o.bringup != bringupWatchFirst && o.bringup != bringupEndpointsFirst:
		return fmt.Errorf("-bringup %q: %s or %s", o.bringup, bringupWatchFirst, bringupEndpointsFirst)
	}
	return nil
}

// workDir makes the run's directory and the logger of the simulated hosts.
func workDir(o options) (dir string, cleanup func(), log *slog.Logger, err error) {
	dir, cleanup = o.dir, func() {}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ovbench-scale-"); err != nil {
			return "", nil, nil, err
		}
		cleanup = func() { _ = os.RemoveAll(dir) }
	} else if err = os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, nil, err
	}
	var w io.Writer = io.Discard
	if o.verbose {
		w = os.Stderr
	} else if f, ferr := os.Create(filepath.Join(dir, "hosts.log")); ferr == nil {
		w = f
	}
	log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return dir, cleanup, log, nil
}

func say(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "ovbench-scale: "+format+"\n", args...)
}

var _ = strings.TrimSpace
