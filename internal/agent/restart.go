package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/shim"
)

// Restart policies (docs/restart.md) follow Docker's restart manager: when a container's process
// exits, its policy decides whether it runs again, after a delay that starts at 100 ms and doubles
// with each restart up to a minute, back to 100 ms once a run lasted 10 s. A restart keeps the
// container whole (ID, name, rootfs, network namespace with its endpoints and addresses, resolver):
// only the runtime's container and the shim are made again, from the same bundle. Stop and kill
// cancel the policy until the next start. The record on disk keeps the policy, the restart count
// and whether the user stopped the container, so that a restart pending when the agent stopped
// resumes when it starts again, and `always` containers are started then (not `unless-stopped` ones
// the user stopped).

// Docker's restart manager constants.
const (
	restartBackoffFirst = 100 * time.Millisecond
	restartBackoffMax   = time.Minute
	// restartResetAfter is the run time from which the delay goes back to restartBackoffFirst.
	restartResetAfter = 10 * time.Second
)

// restartState is a container's restart policy state in memory (guarded by container.mu).
type restartState struct {
	backoff  time.Duration // delay of the last restart (docker's restart manager timeout); 0: none yet
	pending  chan struct{} // closed to cancel the restart waiting for its delay; nil when none
	canceled bool          // stop or kill: no restart until the next start (docker's ExitOnNext)
}

// nextRestart is Docker's restart manager decision for an exit: whether policy p restarts a container
// that exited with exitCode after running for ran, restarted count times since its last start
// (manual: stopped by the user), and the backoff delay, from prev (the last delay, 0: none).
func nextRestart(p api.RestartPolicy, count int, manual bool, exitCode int, ran, prev time.Duration) (bool, time.Duration) {
	if p.IsNone() {
		return false, prev
	}
	delay := prev
	if ran >= restartResetAfter {
		delay = 0
	}
	switch {
	case delay == 0:
		delay = restartBackoffFirst
	case delay < restartBackoffMax:
		delay *= 2
	}
	delay = min(delay, restartBackoffMax)
	switch p.Name {
	case api.RestartAlways:
		return true, delay
	case api.RestartUnlessStopped:
		return !manual, delay
	case api.RestartOnFailure:
		if max := p.MaximumRetryCount; max == 0 || count < max {
			return exitCode != 0, delay
		}
	}
	return false, delay
}

// planRestart applies the container's policy to the exit just recorded in c.rec.State (the caller
// holds c.mu): when it restarts, the container is marked restarting, its count goes up and the
// restart is armed (scheduleRestart waits for the delay it returns).
func (c *container) planRestart() (time.Duration, bool) {
	rs := &c.restart
	if rs.canceled || c.removing || c.rec.Quarantine != "" {
		return 0, false
	}
	st := c.rec.State
	var ran time.Duration
	if !st.StartedAt.IsZero() && st.FinishedAt.After(st.StartedAt) {
		ran = st.FinishedAt.Sub(st.StartedAt)
	}
	ok, delay := nextRestart(c.rec.Config.RestartPolicy, c.rec.RestartCount, c.rec.ManuallyStopped, st.ExitCode, ran, rs.backoff)
	rs.backoff = delay
	if !ok {
		return 0, false
	}
	c.rec.RestartCount++
	c.rec.State.Status = api.StateRestarting
	rs.pending = make(chan struct{})
	return delay, true
}

// cancelRestart stops the policy from restarting the container (stop, kill: manual) or drops only
// the restart waiting for its delay (remove, start). A container that was waiting is exited now; it
// returns true then (the caller saves the record). The caller holds c.mu.
func (c *container) cancelRestart(manual bool) bool {
	rs := &c.restart
	if manual {
		rs.canceled = true
		c.rec.ManuallyStopped = true
	}
	if rs.pending != nil {
		close(rs.pending)
		rs.pending = nil
	}
	if c.rec.State.Status != api.StateRestarting {
		return false
	}
	c.rec.State.Status = api.StateExited
	return true
}

// exitedCh is the channel closed once the exit of the container's current run is recorded.
func (c *container) exitedCh() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exited
}

// closeExited closes ch, a channel of exitedCh, unless it is closed already.
func (c *container) closeExited(ch chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// scheduleRestart restarts c once delay has passed, unless the restart is cancelled first
// (cancelRestart) or the agent stops (the record says restarting: the next agent resumes it).
func (a *Agent) scheduleRestart(c *container, delay time.Duration) {
	c.mu.Lock()
	pending := c.restart.pending
	c.mu.Unlock()
	if pending == nil {
		return
	}
	a.log.Info("container restarting", "container", api.ShortID(c.snapshot().ID), "in", delay, "count", c.snapshot().RestartCount)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-pending:
			return
		case <-a.ctx.Done():
			return
		}
		a.restartNow(c, pending)
	}()
}

// restartNow runs a restarting container again (pending: the restart's channel, not cancelled).
// When that fails the container is exited with the error, as docker leaves it.
func (a *Agent) restartNow(c *container, pending chan struct{}) {
	c.ops.Lock()
	defer c.ops.Unlock()
	c.mu.Lock()
	if c.removing || c.rec.State.Status != api.StateRestarting || c.restart.pending != pending {
		c.mu.Unlock()
		return
	}
	c.restart.pending = nil
	c.mu.Unlock()
	if err := a.rerun(a.ctx, c); err != nil {
		if a.ctx.Err() != nil {
			return // the agent stops: the record still says restarting, the next agent resumes
		}
		id := c.snapshot().ID
		a.log.Error("restart container", "container", api.ShortID(id), "err", err)
		c.mu.Lock()
		if c.rec.State.Status != api.StateRunning {
			c.rec.State.Status = api.StateExited
			c.rec.State.Error = "restart: " + err.Error()
		}
		c.mu.Unlock()
		if err := a.saveRecord(c); err != nil {
			a.log.Error("save container record", "container", api.ShortID(id), "err", err)
		}
	}
}

// startExited is Start of a container that has exited: it runs again as it is (rootfs, network,
// names), its restart count and manual stop cleared as docker's start does.
func (a *Agent) startExited(ctx context.Context, c *container) (api.Container, error) {
	rec := c.snapshot()
	if rec.Quarantine != "" {
		return api.Container{}, fmt.Errorf("start container %s: it is quarantined (%s): the agent cannot tell what it holds; remove it with rm -f and create it again: %w", api.ShortID(rec.ID), rec.Quarantine, errdefs.ErrConflict)
	}
	c.mu.Lock()
	c.cancelRestart(false)
	c.restart = restartState{}
	c.rec.RestartCount = 0
	c.rec.ManuallyStopped = false
	c.rec.State.Error = ""
	c.mu.Unlock()
	if err := a.rerun(ctx, c); err != nil {
		c.mu.Lock()
		if c.rec.State.Status != api.StateRunning {
			c.rec.State.Status = api.StateExited
			c.rec.State.Error = err.Error()
		}
		c.mu.Unlock()
		_ = a.saveRecord(c)
		return api.Container{}, err
	}
	return c.snapshot(), nil
}

// rerun runs an exited (or restarting) container again: the runtime's container of its last run and
// its shim are deleted, a new shim creates it from the same bundle, the resolver keeps serving its
// namespace (its sockets handed to the new shim) and it is started. The caller holds c.ops.
func (a *Agent) rerun(ctx context.Context, c *container) error {
	t0 := time.Now()
	rec := c.snapshot()
	a.deleteRun(ctx, c)
	_ = os.Remove(filepath.Join(a.containerDir(rec.ID), "exit.json"))
	pid, err := a.startShim(ctx, rec)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.exited = make(chan struct{})
	c.rec.State = api.ContainerState{Status: api.StateCreated, Pid: pid}
	c.mu.Unlock()
	a.monitor(c)
	if err := a.serve(ctx, rec); err != nil {
		a.log.Warn("serve names in a restarted container", "container", api.ShortID(rec.ID), "err", err)
	}
	st, err := c.shim.Start(ctx)
	if err != nil {
		// The process never ran: it is killed, and the exit the monitor records is not restarted.
		c.mu.Lock()
		c.restart.canceled = true
		c.mu.Unlock()
		_, _ = c.shim.Delete(context.WithoutCancel(ctx), true)
		select {
		case <-c.exitedCh():
		case <-a.ctx.Done(): // the monitor stops without recording
		case <-time.After(10 * time.Second):
		}
		return &CreateError{ExitCode: shim.StartErrorCode(err.Error()), Err: err}
	}
	c.mu.Lock()
	if c.rec.State.Status == api.StateCreated {
		c.rec.State = mergeState(c.rec.State, st)
	}
	c.rec.State.Error = ""
	now := c.rec
	c.mu.Unlock()
	if err := a.saveRecord(c); err != nil {
		return err
	}
	if now.State.Status == api.StateRunning {
		a.namesStarted(ctx, now)
	}
	a.metrics.started(time.Since(t0))
	a.log.Info("container started again", "container", api.ShortID(rec.ID), "restartCount", now.RestartCount, "took", time.Since(t0))
	return nil
}

// deleteRun deletes the runtime's container of c's last run through its shim, which ends the shim;
// without a shim, through the runtime.
func (a *Agent) deleteRun(ctx context.Context, c *container) {
	id := c.snapshot().ID
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := c.shim.Delete(bg, true); err == nil {
		return
	}
	out, err := exec.CommandContext(bg, a.cfg.Runtime, "--root", a.runtimeRoot(), "delete", "--force", id).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "does not exist") && !strings.Contains(string(out), "not found") {
		a.log.Warn("runtime delete", "container", api.ShortID(id), "err", err, "out", strings.TrimSpace(string(out)))
	}
	_ = os.Remove(a.shimSocket(id))
}

// resumeRestarts follows the agent's start (recover): restarts that were pending go on, containers
// that exited meanwhile get their policy's decision, and exited containers whose policy docker
// applies at a daemon start (always; unless-stopped, on-failure unless stopped by the user or out of
// retries) start again. Running containers are left as they are.
func (a *Agent) resumeRestarts() {
	for _, c := range a.containerList() {
		c.mu.Lock()
		rec := c.rec
		resume := false
		switch {
		case rec.Quarantine != "" || rec.Config.RestartPolicy.IsNone():
		case rec.State.Status == api.StateRestarting:
			resume = true
		case rec.State.Status == api.StateExited && !rec.State.StartedAt.IsZero():
			ok, _ := nextRestart(rec.Config.RestartPolicy, rec.RestartCount, rec.ManuallyStopped, rec.State.ExitCode, 0, 0)
			if ok {
				c.rec.RestartCount++
				c.rec.ManuallyStopped = false
				c.rec.State.Status = api.StateRestarting
				resume = true
			}
		}
		if resume {
			c.restart.pending = make(chan struct{})
		}
		c.mu.Unlock()
		if !resume {
			continue
		}
		if err := a.saveRecord(c); err != nil {
			a.log.Error("save container record", "container", api.ShortID(rec.ID), "err", err)
		}
		a.scheduleRestart(c, restartBackoffFirst)
	}
}

// startAgain is Start of a container that is not created: an exited one runs again (startExited), a
// restarting or running one is left as it is (docker's start does nothing then). again is false for a
// created container (the caller starts it); rec then answers the start.
func (a *Agent) startAgain(ctx context.Context, c *container) (again bool, rec func() (api.Container, error)) {
	switch c.snapshot().State.Status {
	case api.StateExited:
		return true, func() (api.Container, error) { return a.startExited(ctx, c) }
	case api.StateRestarting, api.StateRunning:
		return true, func() (api.Container, error) { return c.snapshot(), nil }
	}
	return false, nil
}

// stoppedByUser records that the user stops c (stop, kill): its policy no longer restarts it until
// the next start, and unless-stopped leaves it stopped after an agent restart. It returns true when c
// was waiting to restart (it is exited now).
func (a *Agent) stoppedByUser(c *container) bool {
	c.mu.Lock()
	if c.rec.Config.RestartPolicy.IsNone() {
		c.mu.Unlock()
		return false
	}
	if c.rec.State.Status == api.StateExited && c.restart.pending == nil {
		c.mu.Unlock()
		return false // already stopped: docker's stop does nothing then
	}
	was := c.cancelRestart(true)
	c.mu.Unlock()
	if err := a.saveRecord(c); err != nil {
		a.log.Error("save container record", "container", api.ShortID(c.snapshot().ID), "err", err)
	}
	return was
}

// stopped tells whether a container of status has no process: exited, or waiting to restart.
func stopped(status string) bool {
	return status == api.StateExited || status == api.StateRestarting
}
