// Package storetest starts real etcd for tests: an embedded member, or a cluster of /usr/bin/etcd
// processes (Debian's etcd-server) whose members can be stopped and started again. Only tests use it.
package storetest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/testutil"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Embedded starts an embedded single-member etcd serving clients on a unix socket in a temporary
// directory, stopped at the end of the test, and returns it.
func Embedded(t testing.TB, noFsync bool) *store.Embedded {
	t.Helper()
	e, err := store.StartEmbedded(store.EmbedConfig{
		Dir:           filepath.Join(t.TempDir(), "etcd"),
		UnsafeNoFsync: noFsync,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// EtcdBinary is Debian's etcd server.
const EtcdBinary = "/usr/bin/etcd"

// Member is one /usr/bin/etcd process of a Cluster.
type Member struct {
	Name               string
	ClientURL, PeerURL string
	dir                string
	args               []string
	cmd                *exec.Cmd
	log                *os.File
}

// Cluster is a set of etcd processes.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// StartCluster starts an n-member etcd cluster of /usr/bin/etcd processes on loopback, skipping the
// test when the binary is missing (install etcd-server). Members are killed at the end of the test.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if _, err := os.Stat(EtcdBinary); err != nil {
		testutil.Skipf(t, "needs %s (Debian package etcd-server; make deps installs it)", EtcdBinary)
	}
	c := &Cluster{t: t}
	var initial []string
	base := t.TempDir()
	for i := 0; i < n; i++ {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
			dir:       filepath.Join(base, fmt.Sprintf("m%d", i)),
		}
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(base),
			"--heartbeat-interval", "100", "--election-timeout", "1500",
		}
		c.Start(m)
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			c.Stop(m)
		}
	})
	return c
}

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Leader returns the member that leads the cluster, or the first member when none says it leads.
func (c *Cluster) Leader() *Member {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Error(err)
		return c.Members[0]
	}
	defer cli.Close()
	for _, m := range c.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return m
		}
	}
	return c.Members[0]
}

// Start starts (or restarts) a member.
func (c *Cluster) Start(m *Member) {
	c.t.Helper()
	f, err := os.OpenFile(m.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(EtcdBinary, m.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+os.Getenv("ETCD_UNSUPPORTED_ARCH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start etcd member %s: %v", m.Name, err)
	}
	m.cmd, m.log = cmd, f
}

// Stop kills a member (SIGKILL: as a crash would) and waits for it.
func (c *Cluster) Stop(m *Member) {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	m.cmd = nil
	_ = m.log.Close()
}

// WaitReady waits until a member answers a client connection, or fails the test.
func WaitReady(t testing.TB, clientURL string, timeout time.Duration) {
	t.Helper()
	addr := strings.TrimPrefix(clientURL, "http://")
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s did not come up within %v: %v", clientURL, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RangeCount is how many reads (range requests) the embedded member e has served so far, from etcd's
// own metrics (etcd_mvcc_range_total on its /metrics, read through its client socket).
func RangeCount(t testing.TB, e *store.Embedded) float64 {
	t.Helper()
	return Metric(t, e, "etcd_mvcc_range_total")
}

// Metric reads one unlabelled metric of the embedded member e from its /metrics (through its client
// socket), such as etcd_mvcc_range_total or etcd_debugging_mvcc_watcher_total.
func Metric(t testing.TB, e *store.Embedded, name string) float64 {
	t.Helper()
	sock := strings.TrimPrefix(e.ClientURL(), "unix://")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://etcd/metrics")
	if err != nil {
		t.Fatalf("read etcd's metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s %q: %v", name, v, err)
			}
			return n
		}
	}
	t.Fatalf("etcd's metric %s is missing", name)
	return 0
}
