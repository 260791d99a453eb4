package overlay

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/membership"
	"github.com/ovnet/ov/internal/testutil"
)

func (f *fakeController) ReportDataplane(_ context.Context, host string, unreachable []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if host != "host1" {
		return fmt.Errorf("report for %q from host1", host)
	}
	f.dataplane = append([]string{}, unreachable...)
	return nil
}

// TestDataplaneReport: the agent tells the controller which hosts it finds unreachable (withdrawn:
// not Alive), and tells it again when that changes, including back to none.
func TestDataplaneReport(t *testing.T) {
	ctl := newFakeController()
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "state.json"))
	defer h.stop()
	report := func(want ...string) func() error {
		return func() error {
			ctl.mu.Lock()
			defer ctl.mu.Unlock()
			if ctl.dataplane == nil || !slices.Equal(ctl.dataplane, want) {
				return fmt.Errorf("the controller has the report %q, want %q", ctl.dataplane, want)
			}
			return nil
		}
	}
	set := func(ms ...membership.Member) {
		h.mem.mu.Lock()
		h.mem.members = ms
		h.mem.mu.Unlock()
	}
	set(membership.Member{Name: "host2", Alive: true, Agent: false}, membership.Member{Name: "host3", Alive: false})
	testutil.Eventually(t, 5*time.Second, report("host3"))
	set(membership.Member{Name: "host2", Alive: false}, membership.Member{Name: "host3", Alive: false})
	testutil.Eventually(t, 5*time.Second, report("host2", "host3"))
	set(membership.Member{Name: "host2", Alive: true, Agent: true}, membership.Member{Name: "host3", Alive: true, Agent: true})
	testutil.Eventually(t, 5*time.Second, report())
}
