package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/store"
)

// The controller runs in a child process (this binary re-executed with childEnv set), so that its CPU
// seconds and peak RSS are its own and not the simulated hosts'. With the embedded etcd (the
// default) etcd runs inside it, as in a default ovcontroller; with -etcd external it talks to the
// cluster whose endpoints it is given.
const (
	childEnv     = "OVBENCH_SCALE_CHILD" // "controller": run the controller, not the benchmark
	childDirEnv  = "OVBENCH_SCALE_DIR"
	childEtcdEnv = "OVBENCH_SCALE_ETCD"               // comma-separated external endpoints; empty: embedded
	childProfEnv = "OVBENCH_SCALE_CONTROLLER_PROFILE" // a file for the child's CPU profile; empty: none
	adminToken   = "ovbench-scale-admin-token"
	joinToken    = "ovbench-scale-join-token"
)

// childStats is the child's answer to a "stats" line on its stdin.
type childStats struct {
	DBBytes int64 `json:"db_bytes"`
	Keys    int64 `json:"keys"`
	// From the controller's own metrics (ov_controller_watches_open, ov_controller_watch_events_sent_total).
	WatchesOpen  int64   `json:"watches_open"`
	EventsPut    float64 `json:"events_put"`
	EventsDelete float64 `json:"events_delete"`
}

// runChild is the controller child: it prints "URL <url>" once serving, answers each "stats" line on
// stdin with a childStats line, and exits when stdin closes (the parent went away).
func runChild() error {
	dir := os.Getenv(childDirEnv)
	if p := os.Getenv(childProfEnv); p != "" {
		if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var endpoints []string
	if e := os.Getenv(childEtcdEnv); e != "" {
		endpoints = strings.Split(e, ",")
	} else {
		pp, err := freePort()
		if err != nil {
			return err
		}
		// As ovcontroller runs it by default: fsync on (etcd-unsafe-no-fsync false).
		emb, err := store.StartEmbedded(store.EmbedConfig{Dir: filepath.Join(dir, "etcd"), PeerURL: fmt.Sprintf("http://127.0.0.1:%d", pp), Log: log})
		if err != nil {
			return err
		}
		defer emb.Close()
		endpoints = []string{emb.ClientURL()}
	}
	st, err := store.Open(store.Config{Endpoints: endpoints, Log: log})
	if err != nil {
		return err
	}
	defer st.Close()
	raiseNoFile()
	cfg := controller.DefaultConfig()
	reg := prometheus.NewRegistry() // as ovcontroller with --metrics-listen
	cfg.Store, cfg.AdminToken, cfg.JoinToken, cfg.Log, cfg.Metrics = st, adminToken, joinToken, log, reg
	c, err := controller.New(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Printf("URL http://%s\n", ln.Addr())
	sc := bufio.NewScanner(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for sc.Scan() {
		if sc.Text() != "stats" {
			continue
		}
		cs := etcdStats(endpoints[0])
		controllerStats(reg, &cs)
		_ = enc.Encode(cs)
	}
	cancel()
	return <-done
}

// etcdStats reads the database size and the number of keys from etcd's own metrics (its /metrics on
// the client URL: the embedded etcd's unix socket, or an external member's port), so that only the
// store speaks etcd's protocol.
func etcdStats(endpoint string) childStats {
	var cs childStats
	hc := &http.Client{Timeout: 10 * time.Second}
	url := strings.TrimRight(endpoint, "/") + "/metrics"
	if sock, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		hc.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}
		url = "http://etcd/metrics"
	}
	resp, err := hc.Get(url)
	if err != nil {
		return cs
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "etcd_mvcc_db_total_size_in_bytes":
			cs.DBBytes = int64(v)
		case "etcd_debugging_mvcc_keys_total":
			cs.Keys = int64(v)
		}
	}
	return cs
}

// controllerStats reads the open watch streams and the events sent from the controller's registry.
func controllerStats(reg *prometheus.Registry, cs *childStats) {
	mfs, err := reg.Gather()
	if err != nil {
		return
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "ov_controller_watches_open":
			for _, m := range mf.GetMetric() {
				cs.WatchesOpen += int64(m.GetGauge().GetValue())
			}
		case "ov_controller_watch_events_sent_total":
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					switch {
					case lp.GetName() != "type":
					case lp.GetValue() == "put":
						cs.EventsPut += m.GetCounter().GetValue()
					case lp.GetValue() == "delete":
						cs.EventsDelete += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
}

// child is the parent's handle on the controller child.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	URL string
}

// startChild re-executes this binary as the controller child.
func startChild(dir string, etcd []string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"=controller", childDirEnv+"="+dir, childEtcdEnv+"="+strings.Join(etcd, ","))
	log, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(out)}
	line, err := c.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "URL ") {
		c.stop()
		b, _ := os.ReadFile(filepath.Join(dir, "controller.log"))
		return nil, fmt.Errorf("controller child did not start (%v): %s", err, b)
	}
	c.URL = strings.TrimSpace(strings.TrimPrefix(line, "URL "))
	return c, nil
}

func (c *child) stats() (childStats, error) {
	var cs childStats
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		return cs, err
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return cs, err
	}
	return cs, json.Unmarshal([]byte(line), &cs)
}

func (c *child) proc() procStat {
	ps, _ := readProc(c.cmd.Process.Pid)
	return ps
}

func (c *child) stop() {
	_ = c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}
