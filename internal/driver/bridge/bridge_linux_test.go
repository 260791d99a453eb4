package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/testutil"
)

// privileged helpers: everything below runs inside the namespace that testutil.InsideNetns made, which
// plays "the host"; containers and a second host are further namespaces.

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return testutil.Run(t, name, args...)
}

// inNS runs a command in the namespace at path (only the network namespace is entered).
func inNS(path string, args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"--net=" + path}, args...)...).CombinedOutput()
	return string(out), err
}

// fetch GETs http://addr/ from the namespace at path ("" = the host) with busybox wget.
func fetch(path, addr string) (string, error) {
	// busybox wget -T crashes (Debian 1.35); bound the time with timeout(1) instead.
	args := []string{"timeout", "5", "busybox", "wget", "-q", "-O", "-", "http://" + addr + "/"}
	if path == "" {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		return string(out), err
	}
	return inNS(path, args...)
}

func ping(path, ip string) error {
	out, err := inNS(path, "busybox", "ping", "-c", "1", "-W", "2", ip)
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v\n%s", ip, filepath.Base(path), err, out)
	}
	return nil
}

// serve starts busybox httpd on port 80 in the namespace at path, answering with body.
func serve(t *testing.T, path, body string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+path, "busybox", "httpd", "-f", "-p", "80", "-h", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testutil.Eventually(t, 10*time.Second, func() error {
		out, err := fetch(path, "127.0.0.1:80")
		if err != nil || out != body {
			return fmt.Errorf("httpd in %s not answering: %v %q", path, err, out)
		}
		return nil
	})
}

// dumpRules lists the filter, nat and raw tables of the host namespace.
func dumpRules(t *testing.T) string {
	return run(t, "iptables", "-t", "filter", "-S") + run(t, "iptables", "-t", "nat", "-S") + run(t, "iptables", "-t", "raw", "-S")
}

// links lists the host's interfaces and addresses (names and IPv4 addresses only).
func links(t *testing.T) string {
	return run(t, "ip", "-4", "-o", "-br", "addr") + run(t, "ip", "-o", "-br", "link")
}

// newHostDriver returns a reconciled driver on the real kernel of the test's namespace, with its state and
// namespaces in temporary directories, torn down when the test ends.
func newHostDriver(t *testing.T) (*Driver, Config) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.NetnsDir = filepath.Join(t.TempDir(), "netns")
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Teardown(ctx)
		_ = exec.Command("umount", "-R", "-l", cfg.NetnsDir).Run()
	})
	if err := d.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	return d, cfg
}

func wantFail(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded; want it blocked", what)
	}
}

func wantOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

// TestBridgePrivileged is the driver against the real kernel, inside a namespace playing the host, with
// the FORWARD policy set to DROP and br_netfilter active (bridged frames traverse FORWARD).
func TestBridgePrivileged(t *testing.T) {
	if _, inside := testutil.InsideNetns(t); !inside {
		return
	}
	// br_netfilter is global (the module), its sysctls per namespace. It is built in or loaded on this
	// machine when /proc/sys/net/bridge exists; otherwise try to load it (and leave it loaded).
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput()
		t.Logf("br_netfilter was not loaded; modprobe br_netfilter (global, left loaded): %v %s", err, out)
	}
	if b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		if strings.TrimSpace(string(b)) != "1" {
			run(t, "sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1")
		}
		t.Logf("br_netfilter active in the test host namespace (bridge-nf-call-iptables=1)")
	} else {
		testutil.SkipPart(t, "br_netfilter unavailable: the FORWARD-DROP case covers routed traffic only, not bridged frames")
	}
	pristine := dumpRules(t)
	run(t, "iptables", "-P", "FORWARD", "DROP")
	pristine = strings.Replace(pristine, "-P FORWARD ACCEPT", "-P FORWARD DROP", 1)

	// A second host on an uplink: 192.168.77.1 (this host, up0) <-> 192.168.77.2 (peer).
	peer := testutil.Netns(t, "peer")
	peerPath := "/run/netns/" + peer
	run(t, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0p")
	run(t, "ip", "link", "set", "up0p", "netns", peer)
	run(t, "ip", "addr", "add", "192.168.77.1/24", "dev", "up0")
	run(t, "ip", "link", "set", "up0", "up")
	run(t, "ip", "-n", peer, "addr", "add", "192.168.77.2/24", "dev", "up0p")
	run(t, "ip", "-n", peer, "link", "set", "up0p", "up")
	// The uplink is the default route, with a smaller MTU than Ethernet's: networks derive theirs from it.
	run(t, "ip", "link", "set", "up0", "mtu", "1450")
	run(t, "ip", "route", "add", "default", "via", "192.168.77.2")
	// A route of the host covers 172.17.0.0/16: the default network must take the next subnet.
	run(t, "ip", "route", "add", "172.17.0.0/16", "via", "192.168.77.2")

	d, cfg := newHostDriver(t)
	def, err := d.Network(DefaultNetwork)
	if err != nil || def.Subnet != netip.MustParsePrefix("172.18.0.0/16") || def.Bridge != "ov0" {
		t.Fatalf("default network = %+v, %v; want ov0 on 172.18.0.0/16 (a host route covers 172.17.0.0/16)", def, err)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(b)) != "1" {
		t.Errorf("ip_forward = %q; want 1", b)
	}
	baseRules, baseLinks := dumpRules(t), links(t)

	n1, err := createNetwork(d, api.Network{Name: "n1", Subnet: "10.31.1.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateNetwork(ctx, api.Network{Name: "n2", Subnet: "10.31.2.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateNetwork(ctx, api.Network{Name: "n3", Subnet: "10.31.1.128/25"}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("overlapping --subnet: %v; want conflict", err)
	}
	_, err = d.CreateNetwork(ctx, api.Network{Name: "n3", Subnet: "192.168.77.0/25"})
	if want := `network "n3": subnet 192.168.77.0/25 overlaps the host's route to 192.168.77.0/24 (dev up0); choose another --subnet`; err == nil || err.Error() != want {
		t.Errorf("subnet over a host route: %v; want %q", err, want)
	}
	if _, err := d.CreateNetwork(ctx, api.Network{Name: "secret", Subnet: "10.31.3.0/24", Internal: true}); err != nil {
		t.Fatal(err)
	}

	attach := func(network, id string, ip string, ports ...string) Endpoint {
		t.Helper()
		ns, err := d.CreateNetns(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		pm, err := api.ParsePortSpecs(ports)
		if err != nil {
			t.Fatal(err)
		}
		req := driver.AttachRequest{Network: network, Container: id, Netns: ns, Ports: apiPorts(pm...)}
		if ip != "" {
			req.IP = ip
		}
		e, err := attachEndpoint(d, req)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a := attach("n1", "ca", "", "8080:80", "5300:53/udp")
	b := attach("n1", "cb", "10.31.1.50")
	c := attach("n2", "cc", "", "127.0.0.1:9090:80")
	s := attach("secret", "cs", "")
	if a.IP() != netip.MustParseAddr("10.31.1.2") || b.IP() != netip.MustParseAddr("10.31.1.50") {
		t.Errorf("addresses %s, %s; want 10.31.1.2 and the static 10.31.1.50", a.IP(), b.IP())
	}
	serve(t, a.Netns, "hello from a")
	serve(t, b.Netns, "hello from b")
	serve(t, c.Netns, "hello from c")

	// The container side: eth0 with the address, the derived MAC, the bridge's MTU, default route.
	out, _ := inNS(a.Netns, "ip", "-o", "link", "show", "eth0")
	if !strings.Contains(out, "02:42:0a:1f:01:02") || !strings.Contains(out, "mtu 1450") {
		t.Errorf("eth0 of a: %s; want MAC 02:42:0a:1f:01:02 and mtu 1450 (the uplink's)", out)
	}
	if out, _ := inNS(a.Netns, "ip", "route", "show", "default"); !strings.Contains(out, "via 10.31.1.1 dev eth0") {
		t.Errorf("default route of a: %q; want via 10.31.1.1 dev eth0", out)
	}

	t.Run("same network", func(t *testing.T) {
		wantOK(t, "ping a -> b", ping(a.Netns, "10.31.1.50"))
		out, err := fetch(a.Netns, "10.31.1.50:80")
		if err != nil || out != "hello from b" {
			t.Errorf("TCP a -> b: %q, %v", out, err)
		}
	})
	t.Run("different networks are isolated", func(t *testing.T) {
		wantFail(t, "ping a -> c", ping(a.Netns, c.IP().String()))
		_, err := fetch(a.Netns, c.IP().String()+":80")
		wantFail(t, "TCP a -> c", err)
		wantFail(t, "ping c -> b", ping(c.Netns, b.IP().String()))
	})
	t.Run("outbound NAT", func(t *testing.T) {
		// The peer has no route back to 10.31.1.0/24: only MASQUERADE makes this work.
		wantOK(t, "ping a -> other host", ping(a.Netns, "192.168.77.2"))
		wantFail(t, "ping from the internal network -> other host", ping(s.Netns, "192.168.77.2"))
		wantFail(t, "ping from the internal network -> a", ping(s.Netns, a.IP().String()))
	})
	t.Run("published port", func(t *testing.T) {
		for _, f := range []struct{ from, ns, addr string }{
			{"host, own address", "", "192.168.77.1:8080"},
			{"host, 127.0.0.1", "", "127.0.0.1:8080"},
			{"other host", peerPath, "192.168.77.1:8080"},
			{"a itself (hairpin)", a.Netns, "192.168.77.1:8080"},
			{"a itself via its gateway", a.Netns, "10.31.1.1:8080"},
			{"b, same network", b.Netns, "192.168.77.1:8080"},
			{"host, 127.0.0.1 only port", "", "127.0.0.1:9090"},
		} {
			out, err := fetch(f.ns, f.addr)
			if err != nil || !strings.HasPrefix(out, "hello from") {
				t.Errorf("%s: GET %s = %q, %v", f.from, f.addr, out, err)
			}
		}
		_, err := fetch(peerPath, "192.168.77.1:9090")
		wantFail(t, "other host -> port published on 127.0.0.1 only", err)
		// Isolation holds through DNAT too (as in Docker without the userland proxy).
		_, err = fetch(c.Netns, "192.168.77.1:8080")
		wantFail(t, "c (other network) -> a's published port", err)
	})
	t.Run("published udp port", func(t *testing.T) {
		// busybox nc has no UDP: the test opens the sockets itself, each in its namespace.
		var srv net.PacketConn
		if err := netlink.Do(a.Netns, func() (err error) { srv, err = net.ListenPacket("udp4", ":53"); return err }); err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		go func() {
			buf := make([]byte, 64)
			for {
				n, from, err := srv.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = srv.WriteTo(append([]byte("echo "), buf[:n]...), from)
			}
		}()
		var cl net.Conn
		if err := netlink.Do(peerPath, func() (err error) { cl, err = net.Dial("udp4", "192.168.77.1:5300"); return err }); err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		testutil.Eventually(t, 10*time.Second, func() error {
			if _, err := cl.Write([]byte("hello-udp")); err != nil {
				return err
			}
			_ = cl.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 64)
			n, err := cl.Read(buf)
			if err != nil || string(buf[:n]) != "echo hello-udp" {
				return fmt.Errorf("udp 192.168.77.1:5300 from the other host: %q %v", buf[:n], err)
			}
			return nil
		})
	})
	t.Run("bad input", func(t *testing.T) {
		ns, err := d.CreateNetns(ctx, "cx")
		if err != nil {
			t.Fatal(err)
		}
		p, _ := api.ParsePortSpec("8080:81")
		if _, err := attachEndpoint(d, driver.AttachRequest{Network: "n2", Container: "cx", Netns: ns, Ports: apiPorts(p)}); !errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("host port 8080 again: %v; want conflict", err)
		}
		if _, err := attachEndpoint(d, driver.AttachRequest{Network: "n1", Container: "cx", Netns: ns, IP: "10.31.1.50"}); !errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("--ip taken: %v; want conflict", err)
		}
		if _, err := attachEndpoint(d, driver.AttachRequest{Network: "n1", Container: "cx", Netns: ns, IP: "10.31.9.9"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("--ip outside the subnet: %v; want invalid argument", err)
		}
		if names, _ := netlink.LinkNames(d.nl, ns); !cmp.Equal(names, []string{"lo"}) {
			t.Errorf("failed attaches left interfaces %v in the namespace", names)
		}
		if err := d.RemoveNetns(ctx, "cx"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("none and container modes", func(t *testing.T) {
		ns, err := d.CreateNetns(ctx, "cnone")
		if err != nil {
			t.Fatal(err)
		}
		out, _ := inNS(ns, "ip", "-o", "link")
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, "lo:") || !strings.Contains(out, "UP") {
			t.Errorf("none: links %q; want only lo, up", out)
		}
		wantOK(t, "none: ping 127.0.0.1", ping(ns, "127.0.0.1"))
		if err := d.RemoveNetns(ctx, "cnone"); err != nil {
			t.Fatal(err)
		}
		// container:a joins a's namespace by path: same interfaces, same server.
		wantOK(t, "container:a", d.CheckNetns(a.Netns))
		if out, err := fetch(a.Netns, "127.0.0.1:80"); err != nil || out != "hello from a" {
			t.Errorf("container:a reaching a's server on 127.0.0.1: %q %v", out, err)
		}
		if err := d.CheckNetns(filepath.Join(cfg.NetnsDir, "gone")); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("container: on a missing namespace: %v; want not found", err)
		}
	})
	t.Run("connect a second network", func(t *testing.T) {
		e, err := attachEndpoint(d, driver.AttachRequest{Network: "n2", Container: "ca", Netns: a.Netns})
		if err != nil {
			t.Fatal(err)
		}
		if e.IfName != "eth1" || e.DefaultRoute {
			t.Errorf("connect: %+v; want eth1 without default route", e)
		}
		wantOK(t, "a (eth1) -> c", ping(a.Netns, c.IP().String()))
		if out, err := fetch(a.Netns, c.IP().String()+":80"); err != nil || out != "hello from c" {
			t.Errorf("TCP a (eth1) -> c: %q, %v", out, err)
		}
		if err := d.Detach(ctx, "n2", "ca"); err != nil {
			t.Fatal(err)
		}
		wantFail(t, "a -> c after disconnect", ping(a.Netns, c.IP().String()))
	})
	t.Run("attach again and repair", func(t *testing.T) {
		before := links(t)
		again, err := attachEndpoint(d, driver.AttachRequest{Network: "n1", Container: "ca", Netns: a.Netns, Ports: apiPorts(a.Ports...)})
		if err != nil || !cmp.Equal(again, a, cmpNetip) {
			t.Errorf("attach again: %+v, %v; want %+v", again, err, a)
		}
		if after := links(t); after != before {
			t.Errorf("attach again changed links:\n%s\n%s", before, after)
		}
		// A crash left a half-built endpoint: the host end is gone.
		run(t, "ip", "link", "del", a.HostIf)
		wantFail(t, "ping with a broken veth", ping(b.Netns, a.IP().String()))
		if err := d.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		wantOK(t, "ping after Reconcile repaired the veth", ping(b.Netns, a.IP().String()))
		c, err := iptables.NewTables()
		if err != nil {
			t.Fatal(err)
		}
		for _, tab := range d.rules().tables(false) {
			if n, err := iptables.Sync(c, tab); err != nil || n != 0 {
				t.Errorf("rules of table %s are not in place: a sync made %d changes (%v)", tab.Name, n, err)
			}
		}
	})

	// Tear down what the test made: back to the state with only the default network.
	for _, e := range d.Endpoints("") {
		if err := d.Detach(ctx, e.Network, e.Container); err != nil {
			t.Fatal(err)
		}
		if err := d.RemoveNetns(ctx, e.Container); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Detach(ctx, "n1", "ca"); err != nil {
		t.Errorf("detach of a missing endpoint: %v; want nil", err)
	}
	// No tracked flow still points at an address that left (a UDP client would keep hitting it).
	flows, err := vnl.ConntrackTableList(vnl.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flows {
		for _, ip := range []netip.Addr{a.IP(), b.IP(), c.IP(), s.IP()} {
			if f.Forward.SrcIP.Equal(ip.AsSlice()) || f.Reverse.SrcIP.Equal(ip.AsSlice()) {
				t.Errorf("conntrack entry left for %s: %s", ip, f)
			}
		}
	}
	for _, n := range []string{"n1", "n2", "secret"} {
		if err := d.DeleteNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(baseRules, dumpRules(t)); diff != "" {
		t.Errorf("iptables after detach and delete (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(baseLinks, links(t)); diff != "" {
		t.Errorf("links after detach and delete (-before +after):\n%s", diff)
	}
	if ents, _ := os.ReadDir(cfg.NetnsDir); len(ents) != 0 {
		t.Errorf("namespace files left: %v", ents)
	}
	if strings.Contains(links(t), n1.Bridge) {
		t.Errorf("bridge %s still exists", n1.Bridge)
	}
	if _, err := d.CreateNetns(ctx, "left-behind"); err != nil {
		t.Fatal(err)
	}
	if err := d.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Teardown(ctx); err != nil {
		t.Errorf("second Teardown: %v; want nil", err)
	}
	if ents, _ := os.ReadDir(cfg.NetnsDir); len(ents) != 0 {
		t.Errorf("namespace files left after Teardown: %v", ents)
	}
	if diff := cmp.Diff(pristine, dumpRules(t)); diff != "" {
		t.Errorf("iptables after Teardown (-pristine +after):\n%s", diff)
	}
}
