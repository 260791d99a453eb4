package bridge

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/perfdoc"
	"github.com/ovnet/ov/internal/testutil"
)

// TestBenchBridge measures how long it takes to put a container on a bridge network with one published
// port (Attach) and to take it off again (Detach), beside the same kernel objects made by hand with
// iproute2 and iptables commands, interleaved run by run, inside a namespace playing the host. It writes
// its table to the file named by OV_PERFDOC (scripts/bench.sh sets docs/performance.md) and asserts
// nothing about speed; without OV_PERFDOC it is skipped.
func TestBenchBridge(t *testing.T) {
	out := testutil.SkipUnlessBench(t)
	if _, inside := testutil.InsideNetns(t); !inside {
		return
	}
	runs := 20
	if n, err := strconv.Atoi(os.Getenv("OV_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	d, cfg := newHostDriver(t)
	if _, err := d.CreateNetwork(ctx, api.Network{Name: "bench", Subnet: "10.77.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	bench, _ := d.Network("bench")
	// "By hand": the chain a shell script would use.
	run(t, "iptables", "-t", "nat", "-N", "HAND-DNAT")
	run(t, "iptables", "-N", "HAND-FWD")

	// ov attaching a container while `others` containers with published ports exist.
	ovAttach := func(id string, port int) (attach, detach time.Duration) {
		ns, err := d.CreateNetns(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := api.ParsePortSpec(fmt.Sprintf("%d:80", port))
		t0 := time.Now()
		if _, err := attachEndpoint(d, driver.AttachRequest{Network: "bench", Container: id, Netns: ns, Ports: apiPorts(p)}); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		if err := d.Detach(ctx, "bench", id); err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		if err := d.RemoveNetns(ctx, id); err != nil {
			t.Fatal(err)
		}
		return t1.Sub(t0), t2.Sub(t1)
	}
	byHand := func(i, port int) (attach, detach time.Duration) {
		ns := filepath.Join(cfg.NetnsDir, fmt.Sprintf("hand%d", i))
		if err := d.ensureNetns(ns); err != nil {
			t.Fatal(err)
		}
		ip := fmt.Sprintf("10.77.200.%d", 1+i%250)
		host := fmt.Sprintf("vhand%d", i)
		dnat := []string{"-p", "tcp", "-m", "tcp", "--dport", strconv.Itoa(port), "-j", "DNAT", "--to-destination", ip + ":80"}
		fwd := []string{"-d", ip + "/32", "-o", bench.Bridge, "-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "ACCEPT"}
		t0 := time.Now()
		for _, c := range [][]string{
			{"ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"ip", "link", "set", host, "master", bench.Bridge, "up"},
			{"nsenter", "--net=" + ns, "ip", "addr", "add", ip + "/16", "dev", "eth0"},
			{"nsenter", "--net=" + ns, "ip", "link", "set", "eth0", "up"},
			{"nsenter", "--net=" + ns, "ip", "route", "add", "default", "via", bench.Gateway.String()},
			append([]string{"iptables", "-t", "nat", "-A", "HAND-DNAT"}, dnat...),
			append([]string{"iptables", "-A", "HAND-FWD"}, fwd...),
		} {
			run(t, c[0], c[1:]...)
		}
		t1 := time.Now()
		run(t, "ip", "link", "del", host)
		run(t, "iptables", append([]string{"-t", "nat", "-D", "HAND-DNAT"}, dnat...)...)
		run(t, "iptables", append([]string{"-D", "HAND-FWD"}, fwd...)...)
		t2 := time.Now()
		if err := d.nl.Remove(ns); err != nil {
			t.Fatal(err)
		}
		return t1.Sub(t0), t2.Sub(t1)
	}
	type series struct{ attach, detach []time.Duration }
	var ov0, ov50, hand series
	measure := func() {
		for i := 0; i < runs+2; i++ {
			a, dt := ovAttach(fmt.Sprintf("b%d", i), 20000+i)
			a2, d2 := byHand(i, 30000+i)
			if i >= 2 { // two warm-up rounds
				ov0.attach, ov0.detach = append(ov0.attach, a), append(ov0.detach, dt)
				hand.attach, hand.detach = append(hand.attach, a2), append(hand.detach, d2)
			}
		}
	}
	measure()
	// 50 containers with a published port each: the rule set ov syncs is 50 endpoints larger.
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("bg%d", i)
		ns, err := d.CreateNetns(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := api.ParsePortSpec(fmt.Sprintf("%d:80", 40000+i))
		if _, err := attachEndpoint(d, driver.AttachRequest{Network: "bench", Container: id, Netns: ns, Ports: apiPorts(p)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < runs; i++ {
		a, dt := ovAttach(fmt.Sprintf("c%d", i), 21000+i)
		ov50.attach, ov50.detach = append(ov50.attach, a), append(ov50.detach, dt)
	}

	ms := func(ds []time.Duration, q float64) string {
		s := slices.Clone(ds)
		slices.Sort(s)
		return fmt.Sprintf("%.1f ms", float64(s[int(q*float64(len(s)-1))].Microseconds())/1000)
	}
	row := func(what string, ds []time.Duration) string {
		return fmt.Sprintf("| %s | %d | %s | %s |\n", what, len(ds), ms(ds, 0.5), ms(ds, 0.9))
	}
	var b strings.Builder
	b.WriteString("## Bridge network attach and detach (network.Driver)\n\n")
	b.WriteString("Putting a container on a bridge network with one published port (`-p HOSTPORT:80`): veth pair, address,\n")
	b.WriteString("MAC, MTU, default route, and the iptables rules; then taking it off again (ov also flushes the\n")
	b.WriteString("address's conntrack entries). ov reconciles its whole rule set on every change that alters it: one\n")
	b.WriteString("`iptables-save` per table and one atomic `iptables-restore --noflush` of the edits per table, 4 runs of\n")
	b.WriteString("the iptables binaries (a container without published ports changes no rule and runs none); the reference is\n")
	b.WriteString("the same objects made by hand with 7 commands (5 `ip`, 3 of them under `nsenter --net=`, and 2 `iptables`). Inside a\n")
	b.WriteString("network namespace playing the host, FORWARD policy ACCEPT, " + strings.TrimSpace(run(t, "iptables", "--version")) + ".\n\n")
	b.WriteString("| what | runs | median | p90 |\n|---|---|---|---|\n")
	b.WriteString(row("ov `Attach`", ov0.attach))
	b.WriteString(row("ov `Attach`, 50 other containers with published ports", ov50.attach))
	b.WriteString(row("by hand: 5 `ip` + 2 `iptables` commands", hand.attach))
	b.WriteString(row("ov `Detach`", ov0.detach))
	b.WriteString(row("ov `Detach`, 50 other containers with published ports", ov50.detach))
	b.WriteString(row("by hand: 1 `ip` + 2 `iptables` commands", hand.detach))
	b.WriteString("\nRuns of ov and by hand interleaved after 2 warm-up rounds. " + perfdoc.Machine() + "\n")
	if err := perfdoc.WriteSection(out, "bridge", b.String()); err != nil {
		t.Fatal(err)
	}
	t.Log(b.String())
}
