package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
)

// The chaos test's bounds. The whole test (lab up, workload, settle, checks, lab down) stays under
// chaosBudget on a 2-core machine; its phases have their own deadlines inside it.
const (
	chaosBudget     = 5 * time.Minute
	chaosContainers = 200              // containers started across the hosts
	chaosWorkers    = 6                // concurrent ovctl operations
	chaosKeep       = 0.2              // fraction of the containers left running (the rest are removed)
	chaosWorkload   = 2 * time.Minute  // the workload hands out no container after this
	chaosSettle     = 90 * time.Second // for the cluster to converge once the last fault is healed
	chaosSeedEnv    = "OV_CHAOS_SEED"
)

// chaosNets are the two overlay networks of the workload.
var chaosNets = []struct{ name, subnet string }{{"chaosa", "10.91.0.0/24"}, {"chaosb", "10.92.0.0/24"}}

// TestChaos: a 3-host lab on a 3-member external etcd; a workload starts 200 busybox containers across
// the hosts on two overlay networks and removes most of them again, while faults are injected at random
// points: an agent SIGKILLed while it runs and while it removes a container, the controller SIGKILLed,
// an etcd member SIGKILLed, a host partitioned off the underlay; each is healed (the process started
// again) after a while. Once every fault is healed the cluster must converge to a state where
//   - no address is held twice, nor by a removed container (agents' records and etcd);
//   - every container `ovctl run -d` reported started is running or has a recorded exit;
//   - etcd's endpoints and owners are exactly the containers the agents report, and its hosts the lab's;
//   - no link, FDB or neighbour entry, iptables rule, mount, network namespace or cgroup is left of a
//     removed container or an unserved network;
//   - every running container reaches every other on its network across hosts (a sample drawn from the
//     seed covering every host pair of both networks).
//
// Everything random (the hosts, networks and removals of the containers, the faults, their targets and
// their timing) comes from one seed, printed at the start and in every failure: replay it with
// OV_CHAOS_SEED=N go test ./test/e2e -run TestChaos. The seed fixes the plan, not the interleaving of
// the operations with the faults, so a replay hits the same kinds of faults at nearly the same points.
func TestChaos(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "/usr/bin/etcd", "etcd-server")
	testutil.RequireBinary(t, "/usr/bin/etcdctl", "etcd-client")
	start := time.Now()
	c := newChaos(t, chaosSeed(t))
	t.Cleanup(func() {
		t.Logf("chaos: seed %d, %v in all", c.seed, time.Since(start).Round(time.Second))
		c.logTimeline()
		if t.Failed() {
			t.Logf("chaos: FAILED with seed %d: %s", c.seed, c.replay())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), chaosBudget-30*time.Second)
	defer cancel()

	c.startLab(ctx)
	t.Logf("chaos: lab up after %v", time.Since(start).Round(time.Second))
	c.runWorkload(ctx)
	t.Logf("chaos: workload and faults done after %v: %s", time.Since(start).Round(time.Second), c.summary())
	c.settle(ctx)
	t.Logf("chaos: converged and checked after %v", time.Since(start).Round(time.Second))
}

// chaosSeed reads OV_CHAOS_SEED, or makes a seed from the clock, and prints it.
func chaosSeed(t *testing.T) int64 {
	seed := time.Now().UnixNano() % 1_000_000_000
	if s := os.Getenv(chaosSeedEnv); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: give a decimal integer (the seed a failed run printed)", chaosSeedEnv, s)
		}
		seed = n
	}
	t.Logf("chaos: seed %d (replay with %s=%d go test ./test/e2e -run TestChaos)", seed, chaosSeedEnv, seed)
	return seed
}

// chaos is one run of TestChaos: its seed, its plan, its lab and the record of what happened.
type chaos struct {
	t    *testing.T
	seed int64
	rng  *rand.Rand // the plan's source; used only while planning, before anything runs concurrently
	l    *lab.Lab
	ctl  map[string][]string // host -> argv of ovctl on that host, fixed before the faults start
	ctrs []*chaosCtr
	plan []fault

	mu         sync.Mutex
	t0         time.Time
	timeline   []string
	inflight   map[string]int // "host1 run", "host2 rm": operations in progress
	dispatched int            // containers handed to the workers
	pending    int            // index of the first fault not injected yet
	holding    bool           // a fault is injected and not healed yet
}

// chaosCtr is one container of the workload: the plan for it, then what ovctl answered.
type chaosCtr struct {
	Name, Host, Net string
	Remove          bool          // planned: removed during the workload
	RmAfter         time.Duration // planned: how long after its start
	ID              string        // printed by ovctl run -d
	Started         bool          // ovctl run -d exited 0
	RunErr          string
	Removed         bool // ovctl rm -f exited 0 (or said there is no such container)
	RmErr           string
}

func newChaos(t *testing.T, seed int64) *chaos {
	c := &chaos{t: t, seed: seed, rng: rand.New(rand.NewPCG(uint64(seed), 0x0c4a05)), inflight: map[string]int{}}
	for i := 0; i < chaosContainers; i++ {
		c.ctrs = append(c.ctrs, &chaosCtr{
			Name:    fmt.Sprintf("ch%03d", i),
			Host:    "host" + strconv.Itoa(1+c.rng.IntN(3)),
			Net:     chaosNets[c.rng.IntN(len(chaosNets))].name,
			Remove:  c.rng.Float64() >= chaosKeep,
			RmAfter: time.Duration(c.rng.IntN(1500)) * time.Millisecond,
		})
	}
	c.plan = planFaults(c.rng)
	return c
}

func (c *chaos) replay() string {
	return fmt.Sprintf("replay with %s=%d go test ./test/e2e -run TestChaos -v", chaosSeedEnv, c.seed)
}

// fatalf fails the test with the seed and how to replay it.
func (c *chaos) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("chaos seed %d: %s\n(%s)", c.seed, fmt.Sprintf(format, args...), c.replay())
}

// event adds a line to the timeline, stamped with the time since the workload began.
func (c *chaos) event(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := time.Duration(0)
	if !c.t0.IsZero() {
		d = time.Since(c.t0)
	}
	c.timeline = append(c.timeline, fmt.Sprintf("%7.2fs %s", d.Seconds(), fmt.Sprintf(format, args...)))
}

func (c *chaos) logTimeline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.Logf("chaos timeline (seed %d):\n%s", c.seed, strings.Join(c.timeline, "\n"))
}

// startLab brings up the chaos lab (3 hosts, external 3-member etcd), imports busybox on every host and
// creates the two overlay networks. The lab is taken down when the test ends (and checked for leftovers
// by TestMain's teardown with every other lab).
func (c *chaos) startLab(ctx context.Context) {
	cfg := lab.DefaultConfig()
	cfg.Prefix = "ovchaos"
	cfg.Subnet = netip.MustParsePrefix("192.168.86.0/24")
	cfg.Hosts = 3
	cfg.EtcdMembers = 3
	cfg.Dir = filepath.Join(tmpDir, cfg.Prefix)
	cfg.Bin = binDir
	cfg.AgentArgs = []string{"--overlay-resync", "2s"}
	uctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	l, err := lab.Up(uctx, cfg)
	if err != nil {
		c.fatalf("start the chaos lab: %v", err)
	}
	labsMu.Lock()
	labs = append(labs, l)
	labsMu.Unlock()
	c.l = l
	c.t.Cleanup(func() {
		c.rememberIDs()
		if c.t.Failed() {
			c.keepLogs()
		}
		if err := l.Down(context.Background()); err != nil {
			c.t.Errorf("chaos lab down: %v", err)
		}
	})
	c.ctl = map[string][]string{}
	for _, h := range l.Hosts {
		cmd, err := l.Ctl(h.Name)
		if err != nil {
			c.fatalf("%v", err)
		}
		c.ctl[h.Name] = cmd.Args
		if _, err := c.ovctl(ctx, h.Name, "image", "import", image, "busybox"); err != nil {
			c.fatalf("import busybox on %s: %v", h.Name, err)
		}
	}
	for _, n := range chaosNets {
		if _, err := c.ovctl(ctx, "host1", "network", "create", "-d", "overlay", "--subnet", n.subnet, n.name); err != nil {
			c.fatalf("create network %s: %v", n.name, err)
		}
	}
}

// keepLogs copies the lab's logs (controller, etcd members, agents) to /tmp/ov-chaos-logs/SEED before
// the lab is taken down.
func (c *chaos) keepLogs() {
	dst := filepath.Join("/tmp/ov-chaos-logs", strconv.FormatInt(c.seed, 10))
	_ = os.RemoveAll(dst)
	logs, _ := filepath.Glob(filepath.Join(c.l.Config.Dir, "*.log"))
	more, _ := filepath.Glob(filepath.Join(c.l.Config.Dir, "*", "*.log"))
	for _, f := range append(logs, more...) {
		rel, _ := filepath.Rel(c.l.Config.Dir, f)
		if b, err := os.ReadFile(f); err == nil && os.MkdirAll(dst, 0o755) == nil {
			_ = os.WriteFile(filepath.Join(dst, strings.ReplaceAll(rel, "/", "-")), b, 0o644)
		}
	}
	c.t.Logf("chaos: the lab's logs are kept in %s", dst)
}

// rememberIDs hands the IDs of the workload's containers to TestMain's teardown, which checks that
// none of their cgroups is left once the lab is down.
func (c *chaos) rememberIDs() {
	labsMu.Lock()
	defer labsMu.Unlock()
	for _, ct := range c.ctrs {
		if len(ct.ID) == 64 {
			ids[ct.ID] = true
		}
	}
}

// summary counts what the workload did.
func (c *chaos) summary() string {
	var started, runFailed, removed, rmFailed int
	for _, ct := range c.ctrs {
		if ct.Started {
			started++
		} else {
			runFailed++
		}
		if ct.Removed {
			removed++
		}
		if ct.RmErr != "" && !ct.Removed {
			rmFailed++
		}
	}
	return fmt.Sprintf("%d containers started, %d runs failed, %d removed, %d removals failed (retried while settling), %d faults",
		started, runFailed, removed, rmFailed, len(c.plan))
}
