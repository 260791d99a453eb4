package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/shim"
	"golang.org/x/sys/unix"
)

// Agent is the host's container engine. Its methods are safe for concurrent use.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	containers map[string]*container    // by ID
	names      map[string]string        // name -> ID, including names reserved by creates in progress
	netMu      sync.Mutex               // serialises network create/delete/connect against each other
	portsMu    sync.Mutex               // serialises the attaches that publish host ports (ports.go)
	teardowns  map[string]chan struct{} // removed containers whose resources are still coming down
	wg         sync.WaitGroup
	ctx        context.Context
	cancel     context.CancelFunc
	metrics    *metrics // nil: no metrics (metrics.go)
	vols       volumes  // named volumes (volume.go)
}

// container is the agent's view of one container. rec is guarded by mu; ops serialises lifecycle
// operations (start, stop, remove, connect) on the container.
type container struct {
	ops      sync.Mutex
	mu       sync.Mutex
	rec      api.Container
	shim     *shim.Client
	exited   chan struct{} // closed when the agent has recorded the exit of the current run (exitedCh); guarded by mu
	removed  chan struct{} // closed when the container is gone
	removing bool
	restart  restartState // restart policy state (restart.go); guarded by mu
}

func (c *container) snapshot() api.Container {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec
}

// New opens the agent's state (creating directories as needed) and reconnects to the shims of the
// containers it finds. Call Serve to answer the API.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.MakeDirs(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{cfg: cfg, log: cfg.Log.With("component", "agent"), containers: map[string]*container{},
		names: map[string]string{}, teardowns: map[string]chan struct{}{}, ctx: ctx, cancel: cancel}
	var err error
	if a.metrics, err = newMetrics(cfg.Metrics, a); err != nil {
		cancel()
		return nil, fmt.Errorf("agent metrics: %w", err)
	}
	if err := a.recover(); err != nil {
		cancel()
		return nil, err
	}
	return a, nil
}

// Close stops the agent's background work (monitors of containers). Containers keep running.
func (a *Agent) Close() {
	a.cancel()
	a.wg.Wait()
}

func (a *Agent) containerDir(id string) string { return filepath.Join(a.cfg.Root, "containers", id) }
func (a *Agent) bundleDir(id string) string    { return filepath.Join(a.cfg.RunDir, "containers", id) }
func (a *Agent) shimSocket(id string) string {
	return filepath.Join(a.cfg.RunDir, "shims", api.ShortID(id)+".sock")
}
func (a *Agent) runtimeRoot() string { return filepath.Join(a.cfg.RunDir, "runtime") }

// saveRecord writes the container's record, durably. A quarantined container has none (its record
// stays set aside, so that every restart reports it the same way): nothing is written for it.
func (a *Agent) saveRecord(c *container) error {
	rec := c.snapshot()
	if rec.Quarantine != "" {
		return nil
	}
	return writeJSONFileSync(filepath.Join(a.containerDir(rec.ID), "container.json"), rec)
}

// mergeState keeps what the agent knew (StartedAt) when the shim's report lacks it.
func mergeState(old, st api.ContainerState) api.ContainerState {
	if st.StartedAt.IsZero() {
		st.StartedAt = old.StartedAt
	}
	if st.Pid == 0 {
		st.Pid = old.Pid
	}
	return st
}

// monitor waits (through the shim) for the container to exit and records it.
func (a *Agent) monitor(c *container) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		exited := c.exitedCh()
		var st api.ContainerState
		for {
			var err error
			st, err = c.shim.Wait(a.ctx)
			if err == nil {
				break
			}
			if a.ctx.Err() != nil {
				return
			}
			// The shim is gone: it recorded the exit before going, or died.
			st = a.exitFromFile(c.snapshot().ID)
			break
		}
		c.mu.Lock()
		c.rec.State = mergeState(c.rec.State, st)
		delay, restart := c.planRestart()
		auto := c.rec.Config.AutoRemove
		id := c.rec.ID
		rec := c.rec
		c.mu.Unlock()
		a.removeNames(rec) // at once, before anyone learns of the exit
		if err := a.saveRecord(c); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Error("save container record", "container", api.ShortID(id), "err", err)
		}
		c.closeExited(exited)
		a.publishNames(a.ctx, rec, false)
		a.log.Info("container exited", "container", api.ShortID(id), "exitCode", st.ExitCode)
		if restart {
			a.scheduleRestart(c, delay)
		}
		if auto {
			a.autoRemoveNow(id)
		}
	}()
}

// autoRemove removes an exited --rm container in the background.
func (a *Agent) autoRemove(c *container) {
	rec := c.snapshot()
	if !rec.Config.AutoRemove {
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.autoRemoveNow(rec.ID)
	}()
}

func (a *Agent) knownPrefix(short string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := range a.containers {
		if strings.HasPrefix(id, short) {
			return true
		}
	}
	return false
}

// lookup finds a container by ID, unique ID prefix or name.
func (a *Agent) lookup(ref string) (*container, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ref == "" {
		return nil, fmt.Errorf("no container named: %w", errdefs.ErrInvalidArgument)
	}
	if c, ok := a.containers[ref]; ok {
		return c, nil
	}
	if id, ok := a.names[ref]; ok {
		if c, ok := a.containers[id]; ok {
			return c, nil
		}
	}
	var found *container
	for id, c := range a.containers {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, fmt.Errorf("container %q: the prefix matches several containers; give more of the ID: %w", ref, errdefs.ErrInvalidArgument)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("container %q: no such container: %w", ref, errdefs.ErrNotFound)
	}
	return found, nil
}

// Inspect returns the container named by ref.
func (a *Agent) Inspect(ctx context.Context, ref string) (api.Container, error) {
	c, err := a.lookup(ref)
	if err != nil {
		return api.Container{}, err
	}
	return c.snapshot(), nil
}

// containerList returns the agent's containers, taken under a.mu so that callers can read each one
// (snapshot) without holding it.
func (a *Agent) containerList() []*container {
	a.mu.Lock()
	defer a.mu.Unlock()
	cs := make([]*container, 0, len(a.containers))
	for _, c := range a.containers {
		cs = append(cs, c)
	}
	return cs
}

// List returns the containers, running ones only unless all, newest first.
func (a *Agent) List(ctx context.Context, all bool) []api.Container {
	cs := a.containerList()
	out := []api.Container{}
	for _, c := range cs {
		rec := c.snapshot()
		if all || rec.State.Status == api.StateRunning || rec.State.Status == api.StateRestarting {
			out = append(out, rec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// Version describes the agent.
func (a *Agent) Version() api.Version {
	return api.WithBuildInfo(api.Version{Version: api.ReleaseVersion, APIVersion: api.AgentAPIVersion, Runtime: a.cfg.Runtime, Host: a.cfg.Host})
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var adjectives = []string{"brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nimble", "proud", "quiet", "swift", "witty", "zen"}
var nouns = []string{"otter", "falcon", "lynx", "heron", "badger", "cobra", "dingo", "gecko", "ibis", "koala", "lemur", "marten", "newt", "puffin", "raven", "stoat"}

// reserveName claims name (or a generated one) for id; it fails when the name is taken.
func (a *Agent) reserveName(name, id string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if name != "" {
		if other, ok := a.names[name]; ok {
			return "", fmt.Errorf("container name %q is already in use by container %s; remove it or choose another name: %w", name, api.ShortID(other), errdefs.ErrAlreadyExists)
		}
		a.names[name] = id
		return name, nil
	}
	for i := 0; ; i++ {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		n := adjectives[int(b[0])%len(adjectives)] + "_" + nouns[int(b[1])%len(nouns)]
		if i > 8 {
			n += "_" + id[:4]
		}
		if _, ok := a.names[n]; !ok {
			a.names[n] = id
			return n, nil
		}
	}
}

func (a *Agent) releaseName(name, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.names[name] == id {
		delete(a.names, name)
	}
}

// ReapAdopted reaps container processes that were reparented to the agent (it is a child
// subreaper) because their shim died, and records their exit. Call it on SIGCHLD. It waits only for
// pids that are containers' inits, never for children the agent started itself, so it cannot steal
// an exit status from os/exec.
func (a *Agent) ReapAdopted() {
	cs := a.containerList()
	for _, c := range cs {
		rec := c.snapshot()
		if rec.State.Pid <= 0 || rec.State.Status == api.StateExited {
			continue
		}
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PID, rec.State.Pid, &info, unix.WEXITED|unix.WNOHANG, nil); err != nil {
			continue
		}
		if info.Signo == 0 { // not exited yet
			continue
		}
		a.log.Warn("reaped a container whose shim is gone", "container", api.ShortID(rec.ID), "pid", rec.State.Pid)
	}
}
