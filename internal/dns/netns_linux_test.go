package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/ovnet/ov/internal/testutil"
)

// queryIn asks the resolver at 127.0.0.11 from inside the network namespace at path.
func queryIn(path, network, name string, qtype uint16, timeout time.Duration) (*mdns.Msg, error) {
	var r *mdns.Msg
	err := inNetns(path, func() error {
		var err error
		r, err = tryQuery(Address+":53", network, name, qtype, timeout)
		return err
	})
	return r, err
}

// TestServeInNetns: Add opens 127.0.0.11:53 inside a container's namespace (bringing lo up), where a
// client asks over UDP and TCP with no NAT; forwarded queries leave from the agent's namespace (the
// upstream listens on the host's loopback, which the container cannot reach); Add again updates;
// Remove closes the sockets.
func TestServeInNetns(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.Netns(t, "dns")
	path := "/run/netns/" + ns
	testutil.Run(t, "ip", "-n", ns, "link", "set", "lo", "down")
	up := startUpstream(t, answerA(0))
	s := NewServer(testTable(), Config{Upstreams: []netip.AddrPort{up.addr}})
	defer s.Close()
	c := Client{Container: idCli, Netns: path, Networks: []string{"front"}}
	if err := s.Add(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if out := testutil.Run(t, "ip", "-n", ns, "link", "show", "lo"); !strings.Contains(out, "UP") {
		t.Errorf("lo is not up after Add:\n%s", out)
	}
	for _, network := range []string{"udp", "tcp"} {
		r, err := queryIn(path, network, "web", mdns.TypeA, 2*time.Second)
		if err != nil || !slices.Equal(addrsOf(r), []string{"10.1.0.2"}) {
			t.Errorf("%s: web from inside the namespace: %v %v, want [10.1.0.2]", network, err, r)
		}
		r, err = queryIn(path, network, "example.com", mdns.TypeA, 2*time.Second)
		if err != nil || !slices.Equal(addrsOf(r), []string{"192.0.2.1"}) {
			t.Errorf("%s: example.com (forwarded from the host's namespace): %v %v", network, err, r)
		}
	}
	// Add again (an agent restart re-adds every container): an update, no error, new networks.
	c.Networks = []string{"back"}
	if err := s.Add(context.Background(), c); err != nil {
		t.Fatalf("Add again: %v", err)
	}
	if r, err := queryIn(path, "udp", "db", mdns.TypeA, 2*time.Second); err != nil || len(r.Answer) != 1 {
		t.Errorf("db after Add with network back: %v %v", err, r)
	}
	// A second container in the same namespace (--network container:X) must not bind beside it.
	if err := s.Add(context.Background(), Client{Container: "other", Netns: path, Networks: []string{"back"}}); err == nil || !strings.Contains(err.Error(), "already served") {
		t.Errorf("Add of a second container in a served namespace: %v, want an error", err)
	}
	// A restarted container: a new namespace at the same path. Add must open sockets in the new one.
	testutil.Run(t, "ip", "netns", "delete", ns)
	testutil.Run(t, "ip", "netns", "add", ns)
	if err := s.Add(context.Background(), c); err != nil {
		t.Fatalf("Add in a new namespace at the same path: %v", err)
	}
	if r, err := queryIn(path, "udp", "db", mdns.TypeA, 2*time.Second); err != nil || len(r.Answer) != 1 {
		t.Errorf("db in the new namespace at the same path: %v %v", err, r)
	}
	// A fresh server (an agent restart) re-opens sockets in the existing namespace.
	s.Close()
	s2 := NewServer(testTable(), Config{})
	defer s2.Close()
	if err := s2.Add(context.Background(), c); err != nil {
		t.Fatalf("Add on a new server in an existing namespace: %v", err)
	}
	if r, err := queryIn(path, "udp", "db", mdns.TypeA, 2*time.Second); err != nil || len(r.Answer) != 1 {
		t.Errorf("db from the new server: %v %v", err, r)
	}
	s2.Remove(idCli)
	if _, err := queryIn(path, "udp", "db", mdns.TypeA, 300*time.Millisecond); err == nil {
		t.Errorf("UDP still answered after Remove")
	}
	err := inNetns(path, func() error {
		c, err := net.DialTimeout("tcp", Address+":53", time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Errorf("TCP still accepted after Remove")
	}
	if out := testutil.Run(t, "ip", "netns", "exec", ns, "ss", "-Hlnu", "sport", "= :53"); strings.TrimSpace(out) != "" {
		t.Errorf("sockets left in the namespace after Remove:\n%s", out)
	}
}

func TestAddErrors(t *testing.T) {
	testutil.RequireRoot(t)
	s := NewServer(NewTable(), Config{})
	defer s.Close()
	if err := s.Add(context.Background(), Client{Container: "x", Netns: filepath.Join(t.TempDir(), "nosuch")}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("Add with a missing namespace: %v, want an error naming it", err)
	}
	if err := s.Add(context.Background(), Client{Container: "x"}); err == nil {
		t.Errorf("Add without a namespace: no error")
	}
	if s.lookupServed("x") != nil {
		t.Errorf("a failed Add left a registration")
	}
}

// selfCPU is the CPU time (user and system) of this process: the resolver's, not dnsperf's.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var qpsRE = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)

// BenchmarkDNSPerf runs dnsperf (Debian package dnsperf) inside a namespace served by the resolver:
// 4 clients, 100 queries outstanding, 10 seconds, table names only. One iteration is one run.
func BenchmarkDNSPerf(b *testing.B) {
	testutil.RequireRoot(b)
	dnsperf := testutil.RequireBinary(b, "dnsperf", "dnsperf")
	ns := testutil.Netns(b, "dnsp")
	path := "/run/netns/" + ns
	s := NewServer(testTable(), Config{})
	defer s.Close()
	if err := s.Add(context.Background(), Client{Container: idCli, Netns: path, Networks: []string{"front"}}); err != nil {
		b.Fatal(err)
	}
	data := filepath.Join(b.TempDir(), "queries")
	if err := os.WriteFile(data, []byte("web A\napp A\nweb2 A\nweb.front A\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	secs := os.Getenv("OV_DNSPERF_SECONDS")
	if secs == "" {
		secs = "10"
	}
	for b.Loop() {
		cpu0 := selfCPU()
		out, err := exec.Command("/usr/bin/time", "-f", "dnsperf cpu: %U user %S sys %e wall", "nsenter", "--net="+path, dnsperf, "-s", Address, "-d", data, "-c", "4", "-q", "100", "-l", secs).CombinedOutput()
		if err != nil {
			b.Fatalf("dnsperf: %v\n%s", err, out)
		}
		m := qpsRE.FindSubmatch(out)
		if m == nil {
			b.Fatalf("no qps in dnsperf's output:\n%s", out)
		}
		qps, _ := strconv.ParseFloat(string(m[1]), 64)
		b.ReportMetric(qps, "qps")
		secs, _ := strconv.ParseFloat(secs, 64)
		b.ReportMetric((selfCPU()-cpu0).Seconds()*1e6/(qps*secs), "server-cpu-us/query")
		b.ReportMetric((selfCPU()-cpu0).Seconds()/secs, "server-cores")
		fmt.Fprintf(os.Stderr, "%s\n", out)
	}
}

// TestGlibcNoStalls: glibc (getent ahosts: A and AAAA sent together from one socket) resolves a table
// name 300 times through 127.0.0.11 in a served namespace, each lookup in well under a second (behind
// NAT the pair races in conntrack and a lookup stalls for 5 s). The namespace's resolv.conf is bound
// over /etc/resolv.conf in a private mount namespace.
func TestGlibcNoStalls(t *testing.T) {
	testutil.RequireRoot(t)
	getent := testutil.RequireBinary(t, "getent", "libc-bin")
	unshare := testutil.RequireBinary(t, "unshare", "util-linux")
	ns := testutil.Netns(t, "dnsg")
	path := "/run/netns/" + ns
	s := NewServer(testTable(), Config{})
	defer s.Close()
	if err := s.Add(context.Background(), Client{Container: idCli, Netns: path, Networks: []string{"front"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+Address+"\noptions timeout:5 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `mount --bind "$1" /etc/resolv.conf || exit 1
for i in $(seq 300); do
	s=$(date +%s%N)
	"$2" ahosts web | grep -q 10.1.0.2 || echo "FAIL $i"
	e=$(date +%s%N)
	echo "ms $(( (e - s) / 1000000 ))"
done`
	out, err := exec.Command(unshare, "--mount", "--propagation", "private", "nsenter", "--net="+path, "sh", "-c", script, "sh", resolv, getent).CombinedOutput()
	if err != nil {
		t.Fatalf("glibc lookups: %v\n%s", err, out)
	}
	worst, n := 0, 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "FAIL") {
			t.Errorf("getent ahosts web: %s", line)
		}
		if ms, ok := strings.CutPrefix(line, "ms "); ok {
			v, _ := strconv.Atoi(ms)
			worst, n = max(worst, v), n+1
		}
	}
	if n != 300 || worst >= 1000 {
		t.Errorf("%d lookups, the slowest took %d ms; want 300, each under 1 s", n, worst)
	}
	t.Logf("%d glibc lookups, the slowest %d ms", n, worst)
}
