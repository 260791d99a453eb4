package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/testutil"
)

// resolverAddr is where every container on a user-defined network finds ov's resolver (internal/dns).
const resolverAddr = "127.0.0.11"

// dnsRun starts a detached container with extra `ovctl run` flags (--network-alias, --dns...),
// removed when the test ends.
func dnsRun(t *testing.T, l *lab.Lab, host, name, network string, flags []string, img string, cmd ...string) container {
	t.Helper()
	ct := runWith(t, l, host, name, network, flags, img, cmd...)
	if ct.NetNS == "" {
		t.Fatalf("container %s on %s has no network namespace", name, host)
	}
	return ct
}

// sleeper is the command of containers that only ask questions.
var sleeper = []string{"sleep", "100000"}

// dnsReply is the resolver's answer to one query.
type dnsReply struct {
	Msg  *dns.Msg
	Size int           // bytes on the wire
	Took time.Duration // from sending the query to reading the answer
}

// ask sends one query (name, qtype) to the resolver at 127.0.0.11:53 inside the network namespace at
// netns, over proto ("udp" or "tcp"), from a socket opened in that namespace as a program of the
// container would; with edns the query advertises a 4096-byte buffer, else the classic 512 bytes.
func ask(netns, proto, name string, qtype uint16, edns bool) (dnsReply, error) {
	var conn net.Conn
	err := netlink.Do(netns, func() (err error) {
		conn, err = net.DialTimeout(proto, net.JoinHostPort(resolverAddr, "53"), 2*time.Second)
		return err
	})
	if err != nil {
		return dnsReply{}, fmt.Errorf("%s to %s:53 in %s: %w", proto, resolverAddr, netns, err)
	}
	defer conn.Close()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	if edns {
		q.SetEdns0(4096, false)
	}
	co := &dns.Conn{Conn: conn, UDPSize: dns.MaxMsgSize}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if err := co.WriteMsg(q); err != nil {
		return dnsReply{}, fmt.Errorf("send %s %s over %s: %w", name, dns.TypeToString[qtype], proto, err)
	}
	buf := make([]byte, dns.MaxMsgSize)
	n, err := co.Read(buf)
	took := time.Since(start)
	if err != nil {
		return dnsReply{Took: took}, fmt.Errorf("%s %s over %s: no answer after %v: %w", name, dns.TypeToString[qtype], proto, took.Round(time.Millisecond), err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		return dnsReply{Took: took}, fmt.Errorf("%s %s over %s: unreadable answer of %d bytes: %w", name, dns.TypeToString[qtype], proto, n, err)
	}
	if r.Id != q.Id {
		return dnsReply{Took: took}, fmt.Errorf("%s: answer id %d for query id %d", name, r.Id, q.Id)
	}
	return dnsReply{Msg: r, Size: n, Took: took}, nil
}

// lookupA asks container c's resolver for the A records of name over UDP and returns the rcode's name
// and the addresses in the order given.
func lookupA(c container, name string) (rcode string, addrs []string, err error) {
	r, err := ask(c.NetNS, "udp", name, dns.TypeA, false)
	if err != nil {
		return "", nil, fmt.Errorf("%s on %s asking for %s: %w", c.Name, c.Host, name, err)
	}
	return dns.RcodeToString[r.Msg.Rcode], aRecords(r.Msg), nil
}

// aRecords lists the A records of an answer, in order.
func aRecords(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

// expectA checks that c resolves name to exactly the addresses want (in any order).
func expectA(c container, name string, want ...string) error {
	rcode, got, err := lookupA(c, name)
	if err != nil {
		return err
	}
	if rcode != "NOERROR" || !sameSet(got, want) {
		return fmt.Errorf("%s on %s: %s -> %s %v, want NOERROR %v", c.Name, c.Host, name, rcode, got, want)
	}
	return nil
}

// expectNX checks that c gets NXDOMAIN for name.
func expectNX(c container, name string) error {
	rcode, got, err := lookupA(c, name)
	if err != nil {
		return err
	}
	if rcode != "NXDOMAIN" {
		return fmt.Errorf("%s on %s: %s -> %s %v, want NXDOMAIN", c.Name, c.Host, name, rcode, got)
	}
	return nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		if seen[x]--; seen[x] < 0 {
			return false
		}
	}
	return true
}

// resolvConf reads a container's /etc/resolv.conf and returns its nameserver, search and options
// values, each in order.
func resolvConf(t *testing.T, l *lab.Lab, c container) (servers, search, options []string, raw string) {
	t.Helper()
	raw, err := execIn(l, c, "cat", "/etc/resolv.conf")
	if err != nil {
		t.Fatalf("cat /etc/resolv.conf in %s: %v", c.Name, err)
	}
	for _, line := range strings.Split(raw, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1])
		case "search":
			search = append(search, f[1:]...)
		case "options":
			options = append(options, f[1:]...)
		}
	}
	return servers, search, options, raw
}

// underlayAddr returns the n-th address of the lab's underlay subnet (the underlay namespace is .1,
// hosts .11 to .19).
func underlayAddr(l *lab.Lab, n int) netip.Addr {
	a := l.Config.Subnet.Masked().Addr()
	for i := 0; i < n; i++ {
		a = a.Next()
	}
	return a
}

// upstream is a DNS server on the lab's underlay that the test runs, in a network namespace of its
// own wired to the underlay bridge: the resolvers that containers' --dns name.
type upstream struct {
	Addr      string // a server that answers (ext.example, big.example); NXDOMAIN for anything else
	Blackhole string // a server that reads queries (UDP and TCP) and never answers
	Nothing   string // an address on the underlay that nothing answers on (no host, no ARP reply)

	mu   sync.Mutex
	seen []string // "udp ext.example. A", in arrival order
}

// External names the upstream knows.
const (
	extName   = "ext.example."
	extAddr   = "198.51.100.7"
	bigName   = "big.example." // 100 A records: 2.7 kB (names uncompressed), beyond 512 bytes
	bigCount  = 100
	udpLimitU = 512 // the upstream truncates every UDP answer to this, whatever EDNS0 says
)

// upstreamMAC is the MAC of the upstream's namespace on the underlay (locally administered).
const upstreamMAC = "02:00:00:00:d5:53"

// startUpstream makes a namespace on the lab's underlay with addresses .53 (Addr) and .54 (Blackhole)
// and starts the servers; everything goes when the test ends.
func startUpstream(t *testing.T, l *lab.Lab) *upstream {
	t.Helper()
	u := &upstream{Addr: underlayAddr(l, 53).String(), Blackhole: underlayAddr(l, 54).String(), Nothing: underlayAddr(l, 55).String()}
	ns := testutil.Netns(t, "ovdns")
	peer := testutil.UniqueName("ovdu")
	bits := fmt.Sprint(l.Config.Subnet.Bits())
	// The lab's bridge has an address of its own (lab.bridgeMAC): a new port does not move .1.
	// The server's MAC is the same every time: the hosts' neighbour entries for its addresses, left by
	// an earlier test, stay right (a new MAC would leave them pointing at a gone link for seconds).
	testutil.Run(t, "ip", "-n", l.UnderlayNetns, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "address", upstreamMAC, "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "-n", l.UnderlayNetns, "link", "del", peer).Run() })
	testutil.Run(t, "ip", "-n", l.UnderlayNetns, "link", "set", peer, "master", l.Bridge, "up")
	testutil.Run(t, "ip", "-n", ns, "addr", "add", u.Addr+"/"+bits, "dev", "eth0")
	testutil.Run(t, "ip", "-n", ns, "addr", "add", u.Blackhole+"/"+bits, "dev", "eth0")
	testutil.Run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	testutil.Run(t, "ip", "-n", ns, "route", "add", "default", "via", underlayAddr(l, 1).String())

	var pc, bhpc net.PacketConn
	var ln, bhln net.Listener
	err := netlink.Do("/run/netns/"+ns, func() (err error) {
		if pc, err = net.ListenPacket("udp4", u.Addr+":53"); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp4", u.Addr+":53"); err != nil {
			return err
		}
		if bhpc, err = net.ListenPacket("udp4", u.Blackhole+":53"); err != nil {
			return err
		}
		bhln, err = net.Listen("tcp4", u.Blackhole+":53")
		return err
	})
	if err != nil {
		t.Fatalf("upstream DNS server in %s: %v", ns, err)
	}
	udpSrv := &dns.Server{PacketConn: pc, Handler: u}
	tcpSrv := &dns.Server{Listener: ln, Handler: u}
	go func() { _ = udpSrv.ActivateAndServe() }()
	go func() { _ = tcpSrv.ActivateAndServe() }()
	held := blackhole(bhpc, bhln)
	t.Cleanup(func() {
		_ = udpSrv.Shutdown()
		_ = tcpSrv.Shutdown()
		bhpc.Close()
		bhln.Close()
		held.closeAll()
	})
	return u
}

// ServeDNS answers as the upstream: the record of ext.example, the 100 of big.example, NXDOMAIN
// otherwise; UDP answers are truncated to 512 bytes (TC set) so that big.example needs TCP.
func (u *upstream) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	proto := w.RemoteAddr().Network()
	m := new(dns.Msg)
	m.SetReply(q)
	if len(q.Question) == 1 {
		qq := q.Question[0]
		name := strings.ToLower(qq.Name)
		u.mu.Lock()
		u.seen = append(u.seen, proto+" "+name+" "+dns.TypeToString[qq.Qtype])
		u.mu.Unlock()
		hdr := dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}
		switch {
		case name == extName && qq.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(extAddr)})
		case name == bigName && qq.Qtype == dns.TypeA:
			for i := 1; i <= bigCount; i++ {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(198, 51, 100, byte(i))})
			}
		case name == extName || name == bigName: // other types: no data
		default:
			m.Rcode = dns.RcodeNameError
		}
	}
	if proto == "udp" {
		m.Truncate(udpLimitU)
	}
	_ = w.WriteMsg(m)
}

// saw reports how many queries the upstream received over proto for name.
func (u *upstream) saw(proto, name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, s := range u.seen {
		if strings.HasPrefix(s, proto+" "+name+" ") {
			n++
		}
	}
	return n
}

// total is the number of queries the upstream received.
func (u *upstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// heldConns are the TCP connections a blackhole accepted and keeps open without a word.
type heldConns struct {
	mu    sync.Mutex
	conns []net.Conn
	n     atomic.Int64 // queries swallowed (UDP datagrams and TCP connections)
}

// blackhole reads every UDP query on pc and discards it, and accepts TCP connections on ln and never
// writes to them.
func blackhole(pc net.PacketConn, ln net.Listener) *heldConns {
	h := &heldConns{}
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			h.n.Add(1)
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.n.Add(1)
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	}()
	return h
}

func (h *heldConns) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
}

// gaiLoopC is a glibc client: it resolves COUNT names (the NAMEs in turn) with getaddrinfo(AF_UNSPEC),
// as most programs do: glibc sends the A and AAAA queries together from one socket. It prints how
// many lookups failed or took a second or more, and the latency percentiles.
const gaiLoopC = `#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
	if (argc < 3) { fprintf(stderr, "usage: gailoop COUNT NAME...\n"); return 2; }
	int n = atoi(argv[1]), k = argc - 2, failed = 0, slow = 0;
	double *lat = calloc(n, sizeof *lat);
	for (int i = 0; i < n; i++) {
		const char *name = argv[2 + i % k];
		struct addrinfo hints, *res = NULL;
		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		double t0 = now();
		int rc = getaddrinfo(name, NULL, &hints, &res);
		lat[i] = now() - t0;
		if (rc != 0) {
			if (failed++ < 5) fprintf(stderr, "getaddrinfo %s: %s\n", name, gai_strerror(rc));
		} else {
			freeaddrinfo(res);
		}
		if (lat[i] >= 1.0) slow++;
	}
	qsort(lat, n, sizeof *lat, cmp);
	printf("lookups=%d failed=%d slow=%d p50_us=%.0f p99_us=%.0f max_us=%.0f\n", n, failed, slow,
		lat[n / 2] * 1e6, lat[n * 99 / 100] * 1e6, lat[n - 1] * 1e6);
	return 0;
}
`

var (
	glibcOnce  sync.Once
	glibcImage string
	glibcErr   error
)

// glibcTarball builds, once, an image of busybox plus /usr/local/bin/gailoop compiled against the
// machine's glibc, with the libraries ldd names and an nsswitch.conf of "files dns".
func glibcTarball(t *testing.T) string {
	t.Helper()
	testutil.RequireBinary(t, "gcc", "gcc")
	testutil.RequireBinary(t, "ldd", "libc-bin")
	glibcOnce.Do(func() { glibcImage, glibcErr = buildGlibcImage(filepath.Join(tmpDir, "glibc")) })
	if glibcErr != nil {
		t.Fatal(glibcErr)
	}
	return glibcImage
}

func buildGlibcImage(dir string) (string, error) {
	root := filepath.Join(dir, "rootfs")
	if err := testutil.MakeBusyboxRootfs(root); err != nil {
		return "", err
	}
	src := filepath.Join(dir, "gailoop.c")
	bin := filepath.Join(root, "usr/local/bin/gailoop")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(src, []byte(gaiLoopC), 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-o", bin, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc gailoop.c (Debian packages gcc and libc6-dev): %v\n%s", err, out)
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return "", fmt.Errorf("ldd %s: %v", bin, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if !strings.HasPrefix(f, "/") {
				continue
			}
			b, err := os.ReadFile(f) // follows the symlink: the library itself
			if err != nil {
				return "", fmt.Errorf("library %s of gailoop: %v", f, err)
			}
			dst := filepath.Join(root, f)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return "", err
			}
			if err := os.WriteFile(dst, b, 0o755); err != nil {
				return "", err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/nsswitch.conf"), []byte("hosts: files dns\n"), 0o644); err != nil {
		return "", err
	}
	tarball := filepath.Join(dir, "glibc.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("tar: %v: %s", err, out)
	}
	return tarball, nil
}

// dnsperfNoise starts dnsperf in container c's namespace, asking 127.0.0.11 for name at qps queries/s
// (at most 60 s); the function it returns stops it and returns dnsperf's summary line.
func dnsperfNoise(t *testing.T, c container, name string, qps int) func() string {
	t.Helper()
	testutil.RequireBinary(t, "dnsperf", "dnsperf")
	qfile := filepath.Join(tmpDir, "noise-"+c.Name)
	if err := os.WriteFile(qfile, []byte(name+" A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command("nsenter", "--net="+c.NetNS, "dnsperf", "-s", resolverAddr, "-d", qfile, "-c", "4", "-q", "100", "-l", "60", "-Q", fmt.Sprint(qps))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() string {
		_ = cmd.Process.Signal(os.Interrupt) // dnsperf prints its statistics on SIGINT
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		var sum []string
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, "Queries per second") || strings.Contains(line, "Queries lost") || strings.Contains(line, "Response codes") {
				sum = append(sum, strings.Join(strings.Fields(line), " "))
			}
		}
		return strings.Join(sum, "; ")
	}
	t.Cleanup(func() { stop() })
	return stop
}
