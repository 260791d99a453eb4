package main

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/membership"
	"github.com/ovnet/ov/internal/netlink"
)

// hostDeath holds the figures of the host death runs.
type hostDeath struct {
	withdrawn []time.Duration // host3 partitioned -> host1 has no entry pointing at it
	back      []time.Duration // host3 healed -> host1 has its entries again
}

// pollEvery is how often host1's kernel state is read during a host death run.
const pollEvery = 5 * time.Millisecond

// hostDeath runs a container on host3, then, runs times, partitions host3 (its agent SIGKILLed, its
// underlay traffic dropped) and times until host1 withdrew the FDB and neighbour entries pointing at it,
// then heals host3 and times until they are back.
func (b *bench) hostDeath(ctx context.Context, runs int) (*hostDeath, error) {
	doomed, err := b.start(ctx, "host3", "doomed")
	if err != nil {
		return nil, err
	}
	h1, err := b.lab.Host("host1")
	if err != nil {
		return nil, err
	}
	h3, err := b.lab.Host("host3")
	if err != nil {
		return nil, err
	}
	vtep := netip.MustParseAddr(h3.Addr)
	nsPath := "/run/netns/" + h1.Netns
	// entries reports whether host1 has an FDB entry towards host3's VTEP or a neighbour entry for the
	// container on host3, on its VXLAN devices.
	entries := func() (bool, error) {
		h, err := netlink.System{}.Handle(nsPath)
		if err != nil {
			return false, err
		}
		defer h.Close()
		links, err := h.LinkList()
		if err != nil {
			return false, err
		}
		for _, l := range links {
			if !strings.HasPrefix(l.Attrs().Name, "ovvx-") {
				continue
			}
			fdb, err := h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
			if err != nil {
				return false, err
			}
			for _, n := range fdb {
				if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == vtep {
					return true, nil
				}
			}
			neigh, err := h.NeighList(l.Attrs().Index, unix.AF_INET)
			if err != nil {
				return false, err
			}
			for _, n := range neigh {
				if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == doomed.ip {
					return true, nil
				}
			}
		}
		return false, nil
	}
	until := func(want bool, timeout time.Duration, what string) (time.Time, error) {
		deadline := time.Now().Add(timeout)
		for {
			have, err := entries()
			if err != nil {
				return time.Time{}, fmt.Errorf("read host1's FDB and neighbour entries: %w", err)
			}
			if have == want {
				return time.Now(), nil
			}
			if time.Now().After(deadline) {
				return time.Time{}, fmt.Errorf("%s: not after %v", what, timeout)
			}
			select {
			case <-ctx.Done():
				return time.Time{}, ctx.Err()
			case <-time.After(pollEvery):
			}
		}
	}
	if _, err := until(true, time.Minute, "host1 programs the entries of the container on host3"); err != nil {
		return nil, err
	}
	res := &hostDeath{}
	for i := range runs {
		// Let gossip settle (every host sees host3 alive again) before killing it.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(3 * time.Second):
		}
		t0 := time.Now()
		if err := b.lab.KillAgent("host3", syscall.SIGKILL); err != nil {
			return nil, err
		}
		if err := b.lab.Partition("host3"); err != nil {
			return nil, err
		}
		gone, err := until(false, time.Minute, "host1 withdraws the entries of host3 after its death")
		if err != nil {
			_ = b.lab.Heal(ctx, "host3")
			_ = b.lab.StartAgent(ctx, "host3")
			return nil, err
		}
		t1 := time.Now()
		if err := b.lab.Heal(ctx, "host3"); err != nil {
			return nil, fmt.Errorf("heal host3: %w", err)
		}
		if err := b.lab.StartAgent(ctx, "host3"); err != nil {
			return nil, fmt.Errorf("start the agent of host3: %w", err)
		}
		back, err := until(true, time.Minute, "host1 programs the entries of host3 again after it came back")
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "host death run %d: entries withdrawn after %.2f s; back %.2f s after the heal began\n", i+1, gone.Sub(t0).Seconds(), back.Sub(t1).Seconds())
		res.withdrawn = append(res.withdrawn, gone.Sub(t0))
		res.back = append(res.back, back.Sub(t1))
	}
	return res, nil
}

// goalDeath is the goal for withdrawing a dead host's entries.
const goalDeath = 5 * time.Second

// detectionBound is what memberlist is configured to take to declare a host of a 3-host cluster
// dead: every host probes the others in turn, one per ProbeInterval, so a dead host is probed within
// (n-1) intervals and found failed by the end of that interval; it is then suspect for the suspicion
// timeout, the minimum when the other live host confirms, up to SuspicionMaxTimeoutMult times that
// when nobody does.
func detectionBound(n int) (cfg membership.Config, suspicionMin, suspicionMax, confirmed, unconfirmed time.Duration) {
	cfg = membership.DefaultConfig("bench", netip.MustParseAddr("127.0.0.1"))
	scale := math.Max(1, math.Log10(float64(n)))
	suspicionMin = time.Duration(float64(cfg.SuspicionMult) * scale * float64(cfg.ProbeInterval))
	suspicionMax = time.Duration(memberlist.DefaultLANConfig().SuspicionMaxTimeoutMult) * suspicionMin
	probed := time.Duration(n-1)*cfg.ProbeInterval + cfg.ProbeInterval
	return cfg, suspicionMin, suspicionMax, probed + suspicionMin, probed + suspicionMax
}

func (d *hostDeath) markdown() string {
	var b strings.Builder
	cfg, smin, smax, confirmed, unconfirmed := detectionBound(3)
	fmt.Fprintf(&b, "### Host death: a dead host's entries withdrawn\n\n")
	fmt.Fprintf(&b, "%d runs. Each run partitions host3 (its agent SIGKILLed (`lab.KillAgent`), then its underlay traffic dropped (`lab.Partition`); host3 runs a container on the network) "+
		"and reads host1's VXLAN FDB and neighbour entries over netlink every %v until none points at host3 (its VTEP, its container's address); "+
		"then heals host3 (rules removed, agent restarted) and waits until host1 has the entries again, and 3 s more before the next run.\n\n", len(d.withdrawn), pollEvery)
	fmt.Fprintf(&b, "| measurement | median (s) | max (s) | runs (s) |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| **host3 dead -> host1 withdrew its entries** | %.2f | %.2f | %s |\n", pct(d.withdrawn, 50).Seconds(), slices.Max(d.withdrawn).Seconds(), secs(d.withdrawn))
	fmt.Fprintf(&b, "| reference: memberlist's detection bound, the other live host confirming | %.2f | | |\n", confirmed.Seconds())
	fmt.Fprintf(&b, "| reference: memberlist's detection bound, nobody confirming | %.2f | | |\n", unconfirmed.Seconds())
	fmt.Fprintf(&b, "| host3 healed -> host1 programmed its entries again | %.2f | %.2f | %s |\n", pct(d.back, 50).Seconds(), slices.Max(d.back).Seconds(), secs(d.back))
	fmt.Fprintf(&b, "\nmemberlist as the agent configures it (agent/membership.DefaultConfig): probe interval %v, probe timeout %v, suspicion multiplier %d, so with 3 hosts "+
		"each live host probes the dead one within 2 probe intervals and finds it failed by the end of the third (%v), then suspects it for %v when the other live host confirms, up to %v when nobody does; "+
		"the agents then withdraw its entries at once (a kicked reconcile).\n",
		cfg.ProbeInterval, cfg.ProbeTimeout, cfg.SuspicionMult, 3*cfg.ProbeInterval, smin, smax)
	verdict := "met"
	if slices.Max(d.withdrawn) > goalDeath {
		verdict = "NOT met"
	}
	fmt.Fprintf(&b, "\nGoal: entries withdrawn within %.0f s of a host's death: %s (max %.2f s).\n", goalDeath.Seconds(), verdict, slices.Max(d.withdrawn).Seconds())
	return b.String()
}

func secs(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = fmt.Sprintf("%.2f", d.Seconds())
	}
	return strings.Join(s, ", ")
}
