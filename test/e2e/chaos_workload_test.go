package e2e

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// faultKind is a kind of fault the chaos test injects.
type faultKind int

const (
	agentDuringRun faultKind = iota // SIGKILL a host's agent while it creates a container
	agentDuringRm                   // SIGKILL a host's agent while it removes a container
	controllerKill                  // SIGKILL the controller
	etcdKill                        // SIGKILL one etcd member
	partitionHost                   // cut a host off the underlay, both ways
	faultKinds
)

func (k faultKind) String() string {
	return [...]string{"agent SIGKILL during run", "agent SIGKILL during rm", "controller SIGKILL", "etcd member SIGKILL", "host partition"}[k]
}

// fault is one planned fault: what, where, when and for how long. It is injected once the workload has
// handed out At containers, at least Gap after the previous fault was healed (and for the agent faults,
// Lead after an operation of its kind began on its host); it is healed Hold later (the process started
// again, the partition healed). The workload does not hand out container At+1 before the fault is
// injected, so every fault hits a running workload.
type fault struct {
	Kind   faultKind
	Host   string // agent and partition faults
	Member int    // etcd faults: 1-3
	At     int
	Gap    time.Duration
	Lead   time.Duration
	Hold   time.Duration
}

// targeted faults wait for an operation of a kind on their host: the workload must go on meanwhile.
func (f fault) targeted() bool { return f.Kind == agentDuringRun || f.Kind == agentDuringRm }

func (f fault) String() string {
	switch f.Kind {
	case etcdKill:
		return fmt.Sprintf("%s (etcd%d for %v, at container %d)", f.Kind, f.Member, f.Hold, f.At)
	case controllerKill:
		return fmt.Sprintf("%s (for %v, at container %d)", f.Kind, f.Hold, f.At)
	}
	return fmt.Sprintf("%s (%s for %v, at container %d)", f.Kind, f.Host, f.Hold, f.At)
}

// planFaults draws the faults: every kind once, in a random order, then two more of random kinds.
func planFaults(rng *rand.Rand) []fault {
	kinds := make([]faultKind, 0, faultKinds+2)
	for k := faultKind(0); k < faultKinds; k++ {
		kinds = append(kinds, k)
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	kinds = append(kinds, faultKind(rng.IntN(int(faultKinds))), faultKind(rng.IntN(int(faultKinds))))
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo)) * time.Millisecond }
	// the points of the workload where they strike: distinct, in order, none in its first or last few
	at := rng.Perm(chaosContainers - 20)[:len(kinds)]
	slices.Sort(at)
	var plan []fault
	for i, k := range kinds {
		f := fault{Kind: k, Host: "host" + strconv.Itoa(1+rng.IntN(3)), Member: 1 + rng.IntN(3), At: 8 + at[i], Gap: ms(500, 2000)}
		switch k {
		case agentDuringRun, agentDuringRm:
			f.Lead, f.Hold = ms(0, 300), ms(500, 3000)
		case controllerKill:
			f.Hold = ms(1000, 5000)
		case etcdKill:
			f.Hold = ms(2000, 6000)
		case partitionHost:
			f.Hold = ms(8000, 12000) // past the controller's 6 s and gossip's suspicion: the host is declared dead
		}
		plan = append(plan, f)
	}
	return plan
}

// ovctl runs ovctl on a host of the lab (in its network namespace) and returns its standard output; the
// error carries its standard error. It may run while faults are injected (it reads no lab state).
func (c *chaos) ovctl(ctx context.Context, host string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	argv := append(append([]string{}, c.ctl[host][1:]...), args...)
	cmd := exec.CommandContext(ctx, c.ctl[host][0], argv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ovctl %s on %s: %v: %s", strings.Join(args, " "), host, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// track counts the operations in progress of a kind on a host ("host1 run"), for the faults that wait for one.
func (c *chaos) track(key string, d int) {
	c.mu.Lock()
	c.inflight[key] += d
	c.mu.Unlock()
}

func (c *chaos) busy(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inflight[key] > 0
}

// runWorkload runs the containers' operations on chaosWorkers workers while the faults are injected,
// and returns when both are done: every fault healed and every process of the lab started again.
func (c *chaos) runWorkload(ctx context.Context) {
	c.mu.Lock()
	c.t0 = time.Now()
	c.mu.Unlock()
	jobs := make(chan *chaosCtr)
	var wg sync.WaitGroup
	for w := 0; w < chaosWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ct := range jobs {
				c.runOne(ctx, ct)
			}
		}()
	}
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		for i, f := range c.plan {
			if ctx.Err() != nil {
				return
			}
			c.inject(ctx, i, f)
		}
	}()
	for k, ct := range c.ctrs {
		c.waitFaults(ctx, k)
		if time.Since(c.t0) > chaosWorkload || ctx.Err() != nil {
			c.event("workload cut short at container %d", k)
			c.t.Errorf("chaos seed %d: the workload handed out only %d of %d containers in %v: operations are stuck (see the timeline) (%s)",
				c.seed, k, len(c.ctrs), chaosWorkload, c.replay())
			break
		}
		jobs <- ct
		c.mu.Lock()
		c.dispatched = k + 1
		c.mu.Unlock()
	}
	close(jobs)
	c.mu.Lock()
	c.dispatched = math.MaxInt // a workload cut short does not hold the remaining faults back
	c.mu.Unlock()
	wg.Wait()
	c.event("workload done")
	<-faultsDone
}

// runOne starts a container and, if the plan says so, removes it a little later.
func (c *chaos) runOne(ctx context.Context, ct *chaosCtr) {
	c.track(ct.Host+" run", 1)
	t0 := time.Now()
	out, err := c.ovctl(ctx, ct.Host, "run", "-d", "--name", ct.Name, "--network", ct.Net, "busybox", "sleep", "100000")
	c.track(ct.Host+" run", -1)
	if took := time.Since(t0); took > 3*time.Second {
		c.event("run %s on %s took %v", ct.Name, ct.Host, took.Round(10*time.Millisecond))
	}
	if err != nil {
		ct.RunErr = err.Error()
		c.event("run %s on %s failed: %s", ct.Name, ct.Host, short(err))
	} else {
		ct.Started, ct.ID = true, strings.TrimSpace(out)
	}
	if !ct.Remove {
		return
	}
	time.Sleep(ct.RmAfter)
	c.track(ct.Host+" rm", 1)
	c.remove(ctx, ct)
	c.track(ct.Host+" rm", -1)
}

// remove runs ovctl rm -f for the container; no such container counts as removed.
func (c *chaos) remove(ctx context.Context, ct *chaosCtr) {
	_, err := c.ovctl(ctx, ct.Host, "rm", "-f", ct.Name)
	if err == nil || strings.Contains(err.Error(), "no such container") {
		ct.Removed, ct.RmErr = true, ""
		return
	}
	ct.RmErr = err.Error()
	c.event("rm %s on %s failed: %s", ct.Name, ct.Host, short(err))
}

// waitFaults holds container k back while a fault planned at or before it is not injected yet (unless
// that fault waits for the workload's operations, and the previous one is healed).
func (c *chaos) waitFaults(ctx context.Context, k int) {
	for ctx.Err() == nil {
		c.mu.Lock()
		p := c.pending
		block := p < len(c.plan) && c.plan[p].At <= k && (!c.plan[p].targeted() || c.holding)
		c.mu.Unlock()
		if !block {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// struck records that fault i is injected (holding) or healed.
func (c *chaos) struck(i int, holding bool) {
	c.mu.Lock()
	c.pending, c.holding = i+1, holding
	c.mu.Unlock()
}

// inject waits for the fault's moment, injects it, holds it, and heals it. A failure of the lab itself
// (a process that will not start again) fails the test.
func (c *chaos) inject(ctx context.Context, i int, f fault) {
	sleepCtx(ctx, f.Gap)
	for ctx.Err() == nil {
		c.mu.Lock()
		reached := c.dispatched >= f.At
		c.mu.Unlock()
		if reached {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer c.struck(i, false)
	l := c.l
	var err error
	switch f.Kind {
	case agentDuringRun, agentDuringRm:
		op := map[faultKind]string{agentDuringRun: " run", agentDuringRm: " rm"}[f.Kind]
		if !c.waitBusy(ctx, f.Host+op, 20*time.Second) {
			c.event("no%s on %s to interrupt within 20s; killing its agent anyway", op, f.Host)
		}
		sleepCtx(ctx, f.Lead)
		c.event("FAULT %s", f)
		if err = l.KillAgent(f.Host, syscall.SIGKILL); err == nil {
			c.struck(i, true)
			sleepCtx(ctx, f.Hold)
			err = l.StartAgent(ctx, f.Host)
		}
	case controllerKill:
		c.event("FAULT %s", f)
		if err = l.KillController(); err == nil {
			c.struck(i, true)
			sleepCtx(ctx, f.Hold)
			err = l.StartController(ctx)
		}
	case etcdKill:
		c.event("FAULT %s", f)
		if err = l.KillEtcd(f.Member); err == nil {
			c.struck(i, true)
			sleepCtx(ctx, f.Hold)
			err = l.StartEtcd(ctx, f.Member)
		}
	case partitionHost:
		c.event("FAULT %s", f)
		if err = l.Partition(f.Host); err == nil {
			c.struck(i, true)
			sleepCtx(ctx, f.Hold)
			err = l.Heal(ctx, f.Host)
		}
	}
	if err != nil {
		c.event("fault %s: the lab failed: %v", f, err)
		c.t.Errorf("chaos seed %d: %s: the lab failed to inject or heal it: %v (%s)", c.seed, f, err, c.replay())
		return
	}
	c.event("healed %s", f.Kind)
}

// waitBusy waits until an operation of the kind key is in progress; false after timeout.
func (c *chaos) waitBusy(ctx context.Context, key string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !c.busy(key) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// short cuts an ovctl error down to its message, for the timeline.
func short(err error) string {
	s := err.Error()
	if i := strings.Index(s, "ovctl: "); i >= 0 {
		s = s[i+len("ovctl: "):]
	}
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}
