package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// sampledFigures are the result's fields measured on the sampled (simulated) hosts only when -sample
// is given; the controller's and etcd's figures and the events per endpoint stay cluster-wide.
var sampledFigures = []string{"converge_s", "add_p50_ms", "add_p99_ms", "add_max_ms", "remove_p50_ms", "remove_p99_ms", "remove_max_ms",
	"dead_withdraw_s", "host_mem_kb (from the average peers of every host)", "sim_converge_cpu_s and sim_heap_mb (the simulator's process: sampled and light hosts)"}

func sampleNames(idx []int) string {
	var b strings.Builder
	for i, h := range idx {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(hostName(h))
	}
	return b.String()
}

// progress prints a status line every 15 s until the function it returns is called: what the hosts
// have done, the controller's CPU and RSS (now and peak) and the simulator's RSS, so that a long run
// can be followed (and where it stood when it was stopped).
func (c *cluster) progress(t0 time.Time) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				say(c.w, "%s", c.status(t0))
			}
		}
	}()
	return func() { close(done) }
}

func (c *cluster) status(t0 time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.0f s: simulated hosts: %d of %d endpoints attached, %d of %d converged", time.Since(t0).Seconds(),
		c.attached.Load(), len(c.hosts)*c.o.perHost, c.converged.Load(), len(c.hosts))
	if f := c.fleet; f != nil {
		fmt.Fprintf(&b, "; light hosts: %d of %d registered, %d of %d endpoints allocated, %d watch streams open (%d reopened, %d refused), %.0f MiB read; %d heartbeats (%d failed), %d host lists",
			f.registered.Load(), len(c.light), f.allocated.Load(), len(c.light)*c.o.perHost, f.streams.Load(), f.reopened.Load(), f.refusals.Load(),
			float64(f.bytes.Load())/(1<<20), f.heartbeats.Load(), f.heartbeatFails.Load(), f.hostLists.Load())
	}
	ps := c.ctl.proc()
	me, _ := readProc(os.Getpid())
	fmt.Fprintf(&b, "; controller %.0f CPU s, RSS %.0f MiB (peak %.0f); simulator %.0f CPU s, RSS %.0f MiB; load %s",
		ps.cpu, ps.rssMB, ps.hwmMB, me.cpu, me.rssMB, loadavg())
	return b.String()
}
