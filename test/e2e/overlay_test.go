package e2e

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
)

// TestCrossHostReachabilityAndIsolation: containers of one overlay network on different hosts reach
// each other with ping and TCP both ways, on the port the server listens on, with no port mapping;
// containers of another overlay network cannot reach them; a container on both reaches both.
func TestCrossHostReachabilityAndIsolation(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "front", "--subnet", "10.20.0.0/24")
	networkOn(t, l, "back", "--subnet", "10.30.0.0/24")
	web := runOn(t, l, "host1", "web", "front", "httpd", "-f", "-p", "80", "-h", "/var/www")
	cli := runOn(t, l, "host2", "cli", "front", "sh", "-c", "while true; do echo pong | nc -l -p 7000; done")
	other := runOn(t, l, "host3", "other", "back", "sleep", "100000")

	// ping both ways
	for _, p := range [][2]container{{cli, web}, {web, cli}} {
		if err := ping(l, p[0], p[1].IP); err != nil {
			t.Fatal(err)
		}
	}
	// TCP both ways, on the server's own port
	out, err := execIn(l, cli, "wget", "-q", "-O", "-", "http://"+web.IP+"/")
	if err != nil || !strings.Contains(out, "hello from ov") {
		t.Fatalf("host2 -> host1 HTTP to %s:80: %v %q", web.IP, err, out)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		out, err := execIn(l, web, "sh", "-c", "echo ping | nc -w 2 "+cli.IP+" 7000")
		if err != nil || !strings.Contains(out, "pong") {
			return fmt.Errorf("host1 -> host2 TCP to %s:7000: %v %q", cli.IP, err, out)
		}
		return nil
	})
	// isolation: back cannot reach front, either way
	if err := ping(l, other, web.IP); err == nil {
		t.Fatalf("%s (network back) reached %s on network front", other.Name, web.IP)
	}
	if err := ping(l, web, other.IP); err == nil {
		t.Fatalf("%s (network front) reached %s on network back", web.Name, other.IP)
	}
	// a container connected to both reaches both
	both := runOn(t, l, "host3", "both", "front", "sleep", "100000")
	ctl(t, l, "host3", "network", "connect", "back", "both")
	for _, target := range []container{web, other} {
		if err := ping(l, both, target.IP); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrentStartsGetDistinctAddresses: 30 containers started concurrently across the 3 hosts on
// one network all get distinct addresses, and a sample of cross-host pairs reach each other.
func TestConcurrentStartsGetDistinctAddresses(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "many", "--subnet", "10.40.0.0/24")
	const n = 30
	cs := make([]container, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			host := l.Hosts[i%3].Name
			name := "m" + strconv.Itoa(i)
			if _, err := ctlOut(l, host, "run", "-d", "--name", name, "--network", "many", "busybox", "sleep", "100000"); err != nil {
				errs[i] = err
				return
			}
			cs[i] = container{Host: host, Name: name}
		}(i)
	}
	wg.Wait()
	for i, c := range cs {
		if c.Name != "" {
			t.Cleanup(func() { _, _ = ctlOut(l, c.Host, "rm", "-f", c.Name) })
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	seen := map[string]string{}
	for i := range cs {
		rec := inspect(t, l, cs[i].Host, cs[i].Name)
		for _, ep := range rec.Networks {
			if ep.Network == "many" {
				cs[i].IP = ep.IP
			}
		}
		if cs[i].IP == "" {
			t.Fatalf("%s has no address", cs[i].Name)
		}
		if prev, dup := seen[cs[i].IP]; dup {
			t.Fatalf("address %s given to both %s and %s", cs[i].IP, prev, cs[i].Name)
		}
		seen[cs[i].IP] = cs[i].Name
	}
	// a sample of cross-host pairs: i on host i%3 pings i+1 (host (i+1)%3) and i+2
	for i := 0; i < n; i += 5 {
		for _, j := range []int{(i + 1) % n, (i + 2) % n} {
			if err := ping(l, cs[i], cs[j].IP); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// dfPing pings ip from the container's network namespace with don't-fragment set and size bytes of
// payload (iputils ping; busybox's cannot set DF).
func dfPing(l *lab.Lab, c container, ip string, size int) error {
	out, err := l.Exec(c.Host, "nsenter", "--net="+c.NetNS, "ping", "-M", "do", "-c", "1", "-W", "2", "-s", strconv.Itoa(size), ip)
	if err != nil {
		return fmt.Errorf("DF ping of %d bytes from %s to %s: %v: %s", size, c.Name, ip, err, strings.TrimSpace(out))
	}
	return nil
}

func mtuOf(t *testing.T, l *lab.Lab, c container) int {
	t.Helper()
	out, err := execIn(l, c, "cat", "/sys/class/net/eth0/mtu")
	if err != nil {
		t.Fatal(err)
	}
	mtu, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("mtu of %s: %q", c.Name, out)
	}
	return mtu
}

// TestMTU: the container MTU is the underlay's minus 50; a packet of exactly that size with DF set
// crosses hosts, one byte more does not; with a 9000-byte underlay the container MTU is 8950.
func TestMTU(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "mtu", "--subnet", "10.50.0.0/24")
	a := runOn(t, l, "host1", "mtu-a", "mtu", "sleep", "100000")
	b := runOn(t, l, "host2", "mtu-b", "mtu", "sleep", "100000")
	if got := mtuOf(t, l, a); got != 1450 {
		t.Fatalf("container MTU on a 1500 underlay = %d, want 1450", got)
	}
	if err := dfPing(l, a, b.IP, 1450-28); err != nil {
		t.Fatal(err)
	}
	if err := dfPing(l, a, b.IP, 1450-27); err == nil {
		t.Fatal("a DF packet one byte over the MTU crossed hosts")
	}

	j := startLab(t, "ovj", "192.168.80.0/24", 9000, 2)
	networkOn(t, j, "jumbo", "--subnet", "10.51.0.0/24")
	ja := runOn(t, j, "host1", "ja", "jumbo", "sleep", "100000")
	jb := runOn(t, j, "host2", "jb", "jumbo", "sleep", "100000")
	if got := mtuOf(t, j, ja); got != 8950 {
		t.Fatalf("container MTU on a 9000 underlay = %d, want 8950", got)
	}
	if err := dfPing(j, ja, jb.IP, 8950-28); err != nil {
		t.Fatal(err)
	}
	if err := dfPing(j, ja, jb.IP, 8950-27); err == nil {
		t.Fatal("a DF packet one byte over the jumbo MTU crossed hosts")
	}
}

// kernelEntries reads the forwarding entries of a network's VXLAN device on a host: FDB entries with a
// remote VTEP ("MAC dst VTEP") and neighbour entries ("IP MAC STATE").
func kernelEntries(l *lab.Lab, host string, vni uint32) (fdb, neigh []string, err error) {
	dev := fmt.Sprintf("ovvx-%d", vni)
	out, err := l.Exec(host, "bridge", "fdb", "show", "dev", dev)
	if err != nil {
		return nil, nil, fmt.Errorf("bridge fdb show dev %s on %s: %v %s", dev, host, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := range f {
			if f[i] == "dst" && i+1 < len(f) {
				fdb = append(fdb, f[0]+" dst "+f[i+1])
			}
		}
	}
	out, err = l.Exec(host, "ip", "neigh", "show", "dev", dev)
	if err != nil {
		return nil, nil, fmt.Errorf("ip neigh show dev %s on %s: %v %s", dev, host, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[1] == "lladdr" {
			neigh = append(neigh, f[0]+" "+f[2]+" "+f[len(f)-1])
		}
	}
	sort.Strings(fdb)
	sort.Strings(neigh)
	return fdb, neigh, nil
}

func mac(ip string) string {
	var b [4]int
	fmt.Sscanf(ip, "%d.%d.%d.%d", &b[0], &b[1], &b[2], &b[3])
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

func vniOf(t *testing.T, l *lab.Lab, network string) uint32 {
	t.Helper()
	out := ctl(t, l, "host1", "network", "inspect", network)
	i := strings.Index(out, `"vni":`)
	if i < 0 {
		t.Fatalf("network inspect %s shows no VNI:\n%s", network, out)
	}
	var vni uint32
	fmt.Sscanf(strings.TrimSpace(out[i+6:]), "%d", &vni)
	return vni
}

func expectEntries(l *lab.Lab, host string, vni uint32, wantFDB, wantNeigh []string) error {
	sort.Strings(wantFDB)
	sort.Strings(wantNeigh)
	fdb, neigh, err := kernelEntries(l, host, vni)
	if err != nil {
		return err
	}
	if strings.Join(fdb, "\n") != strings.Join(wantFDB, "\n") {
		return fmt.Errorf("%s FDB entries:\n%s\nwant:\n%s", host, strings.Join(fdb, "\n"), strings.Join(wantFDB, "\n"))
	}
	if strings.Join(neigh, "\n") != strings.Join(wantNeigh, "\n") {
		return fmt.Errorf("%s neighbour entries:\n%s\nwant:\n%s", host, strings.Join(neigh, "\n"), strings.Join(wantNeigh, "\n"))
	}
	return nil
}

// TestKernelStateMatchesDesign: learning off and proxy on; the FDB and neighbour entries are exactly the
// remote endpoints (plus all-zero entries to the other VTEPs); a removed container's entries vanish from
// the other hosts; an entry or device deleted by hand comes back by itself.
func TestKernelStateMatchesDesign(t *testing.T) {
	l := sharedLab(t)
	networkOn(t, l, "kern", "--subnet", "10.60.0.0/24")
	vni := vniOf(t, l, "kern")
	a := runOn(t, l, "host1", "k1", "kern", "sleep", "100000")
	b := runOn(t, l, "host2", "k2", "kern", "sleep", "100000")
	c := runOn(t, l, "host3", "k3", "kern", "sleep", "100000")
	h2, h3 := l.Hosts[1].Addr, l.Hosts[2].Addr

	out, err := l.Exec("host1", "ip", "-d", "link", "show", fmt.Sprintf("ovvx-%d", vni))
	if err != nil {
		t.Fatal(err, out)
	}
	for _, want := range []string{"nolearning", "proxy", "dstport 4789", "vxlan id " + strconv.Itoa(int(vni))} {
		if !strings.Contains(out, want) {
			t.Errorf("VXLAN device lacks %q:\n%s", want, out)
		}
	}
	wantFDB := []string{mac(b.IP) + " dst " + h2, mac(c.IP) + " dst " + h3, "00:00:00:00:00:00 dst " + h2, "00:00:00:00:00:00 dst " + h3}
	wantNeigh := []string{b.IP + " " + mac(b.IP) + " PERMANENT", c.IP + " " + mac(c.IP) + " PERMANENT"}
	testutil.Eventually(t, 10*time.Second, func() error { return expectEntries(l, "host1", vni, wantFDB, wantNeigh) })
	if err := ping(l, a, b.IP); err != nil {
		t.Fatal(err)
	}

	// k3 goes: its entries (and host3's all-zero entry: it serves the network no more) vanish on host1.
	ctl(t, l, "host3", "rm", "-f", "k3")
	testutil.Eventually(t, 10*time.Second, func() error {
		return expectEntries(l, "host1", vni, []string{mac(b.IP) + " dst " + h2, "00:00:00:00:00:00 dst " + h2}, wantNeigh[:1])
	})

	// Entries deleted by hand come back.
	if out, err := l.Exec("host1", "bridge", "fdb", "del", mac(b.IP), "dev", fmt.Sprintf("ovvx-%d", vni), "dst", h2); err != nil {
		t.Fatal(err, out)
	}
	if out, err := l.Exec("host1", "ip", "neigh", "del", b.IP, "dev", fmt.Sprintf("ovvx-%d", vni)); err != nil {
		t.Fatal(err, out)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		return expectEntries(l, "host1", vni, []string{mac(b.IP) + " dst " + h2, "00:00:00:00:00:00 dst " + h2}, wantNeigh[:1])
	})
	// So does the VXLAN device, and traffic flows again.
	if out, err := l.Exec("host1", "ip", "link", "del", fmt.Sprintf("ovvx-%d", vni)); err != nil {
		t.Fatal(err, out)
	}
	testutil.Eventually(t, 20*time.Second, func() error { return ping(l, a, b.IP) })
}

// TestSubnetOverlappingHostRoute: a host refuses an overlay subnet that overlaps one of its routes (here
// the underlay itself), with a clear error, and allocates nothing.
func TestSubnetOverlappingHostRoute(t *testing.T) {
	l := sharedLab(t)
	bad := netipHalf(l.Config.Subnet.String())
	networkOn(t, l, "clash", "--subnet", bad)
	out, err := ctlOut(l, "host1", "run", "-d", "--name", "clash-a", "--network", "clash", "busybox", "sleep", "100000")
	t.Cleanup(func() { _, _ = ctlOut(l, "host1", "rm", "-f", "clash-a") })
	if err == nil || !strings.Contains(err.Error(), "overlaps the route to "+l.Config.Subnet.String()) || !strings.Contains(err.Error(), "exit status 125") {
		t.Fatalf("run on an overlay subnet overlapping the underlay: %v %s; want exit 125 naming the route", err, out)
	}
	if ps := ctl(t, l, "host1", "ps", "-a"); strings.Contains(ps, "clash-a") {
		t.Fatalf("a refused container is listed:\n%s", ps)
	}
}

// netipHalf returns the upper half of a /24 such as 192.168.79.0/24: 192.168.79.128/25.
func netipHalf(p string) string {
	return strings.TrimSuffix(p, ".0/24") + ".128/25"
}
