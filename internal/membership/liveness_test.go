package membership

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
)

// fakeKernel is a Prober whose answer the test sets: the kernel of the probed host is up or not.
type fakeKernel struct {
	up    atomic.Bool
	asked atomic.Int64
}

func (k *fakeKernel) Probe(_ context.Context, _ netip.Addr, timeout time.Duration) bool {
	k.asked.Add(1)
	if k.up.Load() {
		return true
	}
	time.Sleep(timeout)
	return false
}

func agentView(m *Membership, name string) string {
	for _, mb := range m.Members() {
		if mb.Name == name {
			return fmt.Sprintf("alive=%v agent=%v", mb.Alive, mb.Agent)
		}
	}
	return "absent"
}

// TestStoppedAgentKeepsEntriesWhileKernelAnswers: a host whose agent stops (gossip calls it dead and it
// does not answer a direct probe) keeps its entries while its kernel answers, however long; once its
// kernel is silent too it is withdrawn within DataplaneGrace; when its kernel answers again its entries
// are back, and when its agent comes back it is alive.
func TestStoppedAgentKeepsEntriesWhileKernelAnswers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noProbe   bool // the data plane probe turned off: the old behaviour, withdrawn at once
		wantAlive bool
	}{
		{"with the data plane probe", false, true},
		{"without it", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t, "host1", "host2")
			kernel := &fakeKernel{}
			kernel.up.Store(true)
			a := startNodeWith(t, cl, "host1", "192.0.2.1", func(m *Membership) {
				m.cfg.Dataplane = kernel
				m.cfg.DataplaneInterval = 100 * time.Millisecond
				m.cfg.DataplaneGrace = 500 * time.Millisecond
				m.unsafe.noDataplane = tc.noProbe
			})
			b := startNode(t, cl, "host2", "192.0.2.2")
			testutil.Eventually(t, 10*time.Second, func() error {
				if v := agentView(a.m, "host2"); v != "alive=true agent=true" {
					return fmt.Errorf("host1 sees host2 as %s", v)
				}
				return nil
			})
			b.stop()
			testutil.Eventually(t, 10*time.Second, func() error {
				if v := agentView(a.m, "host2"); !strings.Contains(v, "agent=false") {
					return fmt.Errorf("host1 sees host2 as %s after its agent stopped", v)
				}
				return nil
			})
			time.Sleep(2 * time.Second) // four times the grace: entries stay only if the kernel is asked
			want := fmt.Sprintf("alive=%v agent=false", tc.wantAlive)
			if v := agentView(a.m, "host2"); v != want {
				t.Fatalf("host1 sees host2, whose agent is stopped and kernel answers, as %s; want %s", v, want)
			}
			if tc.noProbe {
				return
			}
			// The host goes down: withdrawn within the grace (and a probe period or two).
			kernel.up.Store(false)
			start := time.Now()
			testutil.Eventually(t, 5*time.Second, func() error {
				if v := agentView(a.m, "host2"); v != "alive=false agent=false" {
					return fmt.Errorf("host1 sees host2, whose kernel is silent, as %s", v)
				}
				return nil
			})
			if took := time.Since(start); took > time.Second+300*time.Millisecond {
				t.Fatalf("host2 withdrawn %v after its kernel went silent, want within the 500ms grace and a probe or two", took)
			}
			// Its kernel answers again (a healed link), its agent still stopped: its entries are back.
			kernel.up.Store(true)
			testutil.Eventually(t, 2*time.Second, func() error {
				if v := agentView(a.m, "host2"); v != "alive=true agent=false" {
					return fmt.Errorf("host1 sees host2, whose kernel answers again, as %s", v)
				}
				return nil
			})
			// Its agent comes back: alive again.
			startNode(t, cl, "host2", "192.0.2.2")
			testutil.Eventually(t, 10*time.Second, func() error {
				if v := agentView(a.m, "host2"); v != "alive=true agent=true" {
					return fmt.Errorf("host1 sees host2, back, as %s", v)
				}
				return nil
			})
		})
	}
}

// TestICMPProbe: the kernel answers the ICMP prober on loopback (the e2e liveness test shows a cut-off
// host does not).
func TestICMPProbe(t *testing.T) {
	testutil.RequireRoot(t)
	p, err := NewICMP()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	if !p.Probe(ctx, netip.MustParseAddr("127.0.0.1"), time.Second) {
		t.Fatal("no answer from 127.0.0.1")
	}
	if got := checksum(echo(8, 0x1234, 1, []byte{1, 2, 3, 4, 5, 6, 7, 8})); got != 0 {
		t.Fatalf("an echo message with its checksum sums to %#x, want 0", got)
	}
}
