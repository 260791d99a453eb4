package agent

import (
	"testing"
	"time"

	"github.com/ovnet/ov/api"
)

// TestNextRestart is Docker's restart manager as a table: which exits restart under each policy, and
// the backoff (100 ms doubling to a minute, back to 100 ms after a run of 10 s or more).
func TestNextRestart(t *testing.T) {
	always := api.RestartPolicy{Name: api.RestartAlways}
	unless := api.RestartPolicy{Name: api.RestartUnlessStopped}
	onFail2 := api.RestartPolicy{Name: api.RestartOnFailure, MaximumRetryCount: 2}
	onFail := api.RestartPolicy{Name: api.RestartOnFailure}
	ms := time.Millisecond
	for _, tc := range []struct {
		name      string
		p         api.RestartPolicy
		count     int
		manual    bool
		exit      int
		ran, prev time.Duration
		restart   bool
		delay     time.Duration
	}{
		{"no", api.RestartPolicy{Name: api.RestartNo}, 0, false, 1, 0, 0, false, 0},
		{"none given", api.RestartPolicy{}, 0, false, 1, 0, 0, false, 0},
		{"always after exit 0", always, 0, false, 0, 0, 0, true, 100 * ms},
		{"always doubles", always, 1, false, 0, ms, 100 * ms, true, 200 * ms},
		{"always doubles again", always, 5, false, 0, ms, 3200 * ms, true, 6400 * ms},
		{"always up to a minute", always, 9, false, 0, ms, 51200 * ms, true, time.Minute},
		{"always stays at a minute", always, 10, false, 0, ms, time.Minute, true, time.Minute},
		{"reset after a run of 10s", always, 10, false, 0, 10 * time.Second, time.Minute, true, 100 * ms},
		{"no reset after 9.9s", always, 3, false, 0, 9900 * ms, 400 * ms, true, 800 * ms},
		{"always even when stopped by the user (agent start)", always, 0, true, 143, 0, 0, true, 100 * ms},
		{"unless-stopped", unless, 0, false, 0, 0, 0, true, 100 * ms},
		{"unless-stopped stopped by the user", unless, 0, true, 143, 0, 0, false, 100 * ms},
		{"on-failure exit 0", onFail2, 0, false, 0, 0, 0, false, 100 * ms},
		{"on-failure exit 3", onFail2, 0, false, 3, 0, 0, true, 100 * ms},
		{"on-failure second", onFail2, 1, false, 3, 0, 100 * ms, true, 200 * ms},
		{"on-failure out of retries", onFail2, 2, false, 3, 0, 200 * ms, false, 400 * ms},
		{"on-failure without a maximum", onFail, 1000, false, 1, 0, time.Minute, true, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restart, delay := nextRestart(tc.p, tc.count, tc.manual, tc.exit, tc.ran, tc.prev)
			if restart != tc.restart || delay != tc.delay {
				t.Errorf("nextRestart = %v, %v; want %v, %v", restart, delay, tc.restart, tc.delay)
			}
		})
	}
}

// TestPlanRestart: an exit marks the container restarting and counts the restart; stop (manual)
// cancels it until the next start; on-failure:2 stops after two restarts.
func TestPlanRestart(t *testing.T) {
	c := &container{rec: api.Container{Config: api.ContainerCreate{RestartPolicy: api.RestartPolicy{Name: api.RestartOnFailure, MaximumRetryCount: 2}}}}
	exit := func(code int) (time.Duration, bool) {
		c.rec.State = api.ContainerState{Status: api.StateExited, ExitCode: code}
		return c.planRestart()
	}
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		d, ok := exit(3)
		if !ok || d != want || c.rec.State.Status != api.StateRestarting || c.rec.RestartCount != i+1 || c.restart.pending == nil {
			t.Fatalf("exit %d: %v %v, record %+v; want a restart in %v", i+1, d, ok, c.rec, want)
		}
		c.restart.pending = nil
	}
	if _, ok := exit(3); ok || c.rec.State.Status != api.StateExited || c.rec.RestartCount != 2 {
		t.Fatalf("third exit restarts (%v) or changes the record: %+v", ok, c.rec)
	}

	c = &container{rec: api.Container{Config: api.ContainerCreate{RestartPolicy: api.RestartPolicy{Name: api.RestartAlways}}}}
	c.rec.State.Status = api.StateRunning
	if c.cancelRestart(true) {
		t.Fatalf("cancelRestart of a running container says it was restarting")
	}
	if _, ok := exit(0); ok || !c.rec.ManuallyStopped {
		t.Fatalf("an always container stopped by the user restarts: %+v", c.rec)
	}
}
