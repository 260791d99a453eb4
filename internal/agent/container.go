package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/atomicfile"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/image"
	"github.com/ovnet/ov/internal/shim"
)

// undo collects the rollback of each stage of a create, registered as the stage succeeds. On failure
// (rollback without commit) they run in reverse order, once.
type undo struct {
	steps []func()
	done  bool
}

func (u *undo) add(f func()) { u.steps = append(u.steps, f) }

// commit marks the create as complete: rollback does nothing from then on.
func (u *undo) commit() { u.done = true }

// rollback runs the registered steps, last first, unless commit or rollback ran before.
func (u *undo) rollback() {
	if u.done {
		return
	}
	u.done = true
	for i := len(u.steps) - 1; i >= 0; i-- {
		u.steps[i]()
	}
}

// CreateError is returned by Create when the runtime refused the container; ExitCode is what
// `ovctl run` exits with (125, 126 or 127).
type CreateError struct {
	ExitCode int
	Err      error
}

func (e *CreateError) Error() string { return e.Err.Error() }
func (e *CreateError) Unwrap() error { return e.Err }

// Create makes a container from req: name, rootfs, network, bundle and shim. It does not start it.
// Each stage registers its rollback in an undo; any error returns through the one deferred rollback.
func (a *Agent) Create(ctx context.Context, req api.ContainerCreate) (api.Container, error) {
	if err := req.Validate(); err != nil {
		return api.Container{}, err
	}
	req.LogOpts = logOptsWithDefaults(req.LogOpts)
	id := newID()
	t0 := time.Now()
	var u undo
	defer u.rollback()
	name, err := a.reserveName(req.Name, id)
	if err != nil {
		return api.Container{}, err
	}
	u.add(func() { a.releaseName(name, id) })

	// The image: its run config now, its rootfs below (in parallel with the network).
	img, err := a.resolveImageFor(ctx, &req)
	if err != nil {
		return api.Container{}, err
	}
	mode, err := a.parseNetworkMode(req.Network)
	if err != nil {
		return api.Container{}, err
	}
	if err := a.waitAddressFree(ctx, req); err != nil {
		return api.Container{}, err
	}
	hostname := containerHostname(id, req, mode)
	bundle, err := a.makeContainerDirs(id, &u)
	if err != nil {
		return api.Container{}, err
	}

	// The rootfs (an overlay mount), the network namespace, the endpoints (veth, address, iptables)
	// and the shim with `runtime create` overlap: the runtime needs the rootfs and the namespace, but
	// not the endpoints, which only have to be ready before start.
	rootfs := a.prepareRootfs(ctx, id, req.Image, img.rootfs, &u)
	netns, netErr := a.netnsFor(ctx, id, mode, &u)
	attached := a.startAttach(ctx, id, name, req, mode, netns, netErr, &u)
	tNet := time.Since(t0)
	rootfsDir, rootErr := rootfs()
	tRoot := time.Since(t0)
	if rootErr != nil {
		return api.Container{}, fmt.Errorf("prepare the rootfs of image %q: %w", req.Image, rootErr)
	}
	if netErr != nil {
		return api.Container{}, netErr
	}
	spec, err := a.writeSpec(specInput{ID: id, Create: req, Image: img.config, Rootfs: rootfsDir, Netns: netns,
		HostNet: mode.kind == modeHost, Hostname: hostname, Bundle: bundle, Cgroup: path.Join(a.cfg.CgroupParent, id), ResolvConf: a.resolvConfFor(req, mode), InitPath: a.cfg.InitPath})
	if err != nil {
		return api.Container{}, err
	}
	rec := api.Container{
		ID: id, Name: name, Image: req.Image, ImageID: img.id, Command: userCommand(spec.Process.Args, req.Init),
		Created: time.Now().UTC(), Config: req, Rootfs: rootfsDir,
		LogPath: filepath.Join(a.containerDir(id), id+"-json.log"),
		State:   api.ContainerState{Status: api.StateCreated},
	}
	if mode.kind != modeHost {
		rec.NetNS = netns
	}
	c := a.newContainer(rec)
	// The record goes to disk before the shim starts, so a crash in between leaves something that
	// remove can clean up.
	if err := a.saveFirstRecord(c); err != nil {
		return api.Container{}, err
	}
	tSpec := time.Since(t0)
	pid, shimErr := a.startShim(ctx, rec)
	tShim := time.Since(t0)
	res := attached.wait()
	if shimErr != nil {
		return api.Container{}, shimErr
	}
	u.add(func() { _, _ = c.shim.Delete(context.Background(), true) })
	if res.err != nil {
		return api.Container{}, res.err
	}
	if len(res.endpoints) > 0 {
		if err := writeHosts(bundle, hostname, res.endpoints[0].IP, extraHosts(req.ExtraHosts, res.endpoints[0].Gateway)); err != nil {
			return api.Container{}, err
		}
	}
	if err := a.attached(ctx, c, pid, res.endpoints, mode, &u); err != nil {
		return api.Container{}, err
	}
	if err := a.saveCompleteRecord(c); err != nil {
		return api.Container{}, err
	}
	a.mu.Lock()
	a.containers[id] = c
	a.mu.Unlock()
	u.commit()
	a.metrics.created(time.Since(t0))
	a.monitor(c)
	a.log.Info("container created", "container", api.ShortID(id), "name", name, "image", req.Image,
		"netns", tNet, "rootfs", tRoot, "spec", tSpec, "shim", tShim, "attach", res.took, "total", time.Since(t0))
	return c.snapshot(), nil
}

// saveFirstRecord writes a new container's record and makes its directory durable (its name is
// flushed in its parent). The creatingMarker stays until Create completes: an agent killed before
// then (the endpoints attached but not yet in the record, the user told nothing) leaves a create that
// the next start undoes in full, endpoints included, instead of a container whose addresses nothing
// would release.
func (a *Agent) saveFirstRecord(c *container) error {
	if err := a.saveRecord(c); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(a.containerDir(c.snapshot().ID)))
}

// saveCompleteRecord writes the record of a create that is complete (it names the container's pid and
// endpoints) and drops the creatingMarker. The removal is not flushed: a marker that comes back after a
// power cut beside a complete record is ignored (see interrupted).
func (a *Agent) saveCompleteRecord(c *container) error {
	if err := a.saveRecord(c); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(a.containerDir(c.snapshot().ID), creatingMarker))
	return nil
}

// newContainer is the agent's handle of the container rec, talking to its shim.
func (a *Agent) newContainer(rec api.Container) *container {
	return &container{rec: rec, shim: shim.NewClient(a.shimSocket(rec.ID)), exited: make(chan struct{}), removed: make(chan struct{})}
}

// writeSpec readies the host side of the container's mounts (prepareMounts), builds its OCI spec and
// writes it to its bundle.
func (a *Agent) writeSpec(in specInput) (*specs.Spec, error) {
	if err := a.prepareMounts(in.ID, in.Create.Mounts, in.Rootfs); err != nil {
		return nil, err
	}
	in.VolumesDir = a.volumesDir()
	spec, err := buildSpec(in)
	if err != nil {
		return nil, err
	}
	if err := writeJSONFile(filepath.Join(in.Bundle, "config.json"), spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// createImage is what a create takes from its image: a rootfs directory given as the image, or the run
// config and ID of an image of the store (whose rootfs prepareRootfs makes).
type createImage struct {
	rootfs string
	config image.RunConfig
	id     string
}

func (a *Agent) resolveImage(ctx context.Context, ref string) (createImage, error) {
	if filepath.IsAbs(ref) {
		if fi, err := os.Stat(ref); err != nil || !fi.IsDir() {
			return createImage{}, fmt.Errorf("image %q: not a rootfs directory: %w", ref, errdefs.ErrNotFound)
		}
		return createImage{rootfs: ref}, nil
	}
	if a.cfg.Images == nil {
		return createImage{}, fmt.Errorf("image %q: this agent has no image store; give an absolute rootfs directory: %w", ref, errdefs.ErrNotFound)
	}
	img, err := a.cfg.Images.Get(ctx, ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return createImage{}, unknownImage(ref)
	}
	if err != nil {
		return createImage{}, fmt.Errorf("image %q: %w", ref, err)
	}
	return createImage{config: img.Config, id: img.ID}, nil
}

// waitAddressFree waits, when req asks for a static address or host ports, until the containers
// removed a moment ago that may still hold them are detached (see Remove).
func (a *Agent) waitAddressFree(ctx context.Context, req api.ContainerCreate) error {
	if req.IP == "" && len(req.Ports) == 0 {
		return nil
	}
	return a.waitTeardowns(ctx)
}

// containerHostname is req's hostname, else the host's for the host network, else the short ID.
func containerHostname(id string, req api.ContainerCreate, mode netMode) string {
	hostname := req.Hostname
	if hostname == "" {
		hostname = id[:12]
	}
	if mode.kind == modeHost && req.Hostname == "" {
		hostname, _ = os.Hostname()
	}
	return hostname
}

// makeContainerDirs makes the container's state directory and its bundle, and returns the bundle.
func (a *Agent) makeContainerDirs(id string, u *undo) (string, error) {
	if err := os.MkdirAll(a.containerDir(id), 0o700); err != nil {
		return "", err
	}
	u.add(func() { _ = os.RemoveAll(a.containerDir(id)) })
	// Until the first record is written, the marker lets a restart prune what a crash left. It need
	// not be durable: without it a restart quarantines the leftovers instead, which deletes nothing.
	if err := writeMarker(a.containerDir(id), creatingMarker); err != nil {
		return "", err
	}
	bundle := a.bundleDir(id)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return "", err
	}
	u.add(func() { _ = os.RemoveAll(bundle) })
	return bundle, nil
}

// prepareRootfs starts making the rootfs of container id from image ref in the background (unless
// dir, a rootfs directory given as the image, is set) and returns the function that waits for it.
func (a *Agent) prepareRootfs(ctx context.Context, id, ref, dir string, u *undo) func() (string, error) {
	if dir != "" {
		return func() (string, error) { return dir, nil }
	}
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		dir, err = a.cfg.Images.Prepare(ctx, id, ref)
	}()
	u.add(func() {
		if err := a.cfg.Images.Release(context.Background(), id); err != nil {
			a.log.Warn("release rootfs", "container", api.ShortID(id), "err", err)
		}
	})
	return func() (string, error) {
		<-done
		return dir, err
	}
}

// attachment is an attach running in the background (see attachAsync), waited for once.
type attachment struct {
	ch  chan attachResult
	got bool
	res attachResult
}

func (p *attachment) wait() attachResult {
	if !p.got {
		p.res, p.got = <-p.ch, true
	}
	return p.res
}

// startAttach starts attaching the container's namespace (when making it succeeded: netErr is nil)
// and registers a rollback that waits for the attach, so that it has finished before the steps
// registered earlier (its detach first) are rolled back.
func (a *Agent) startAttach(ctx context.Context, id, name string, req api.ContainerCreate, mode netMode, netns string, netErr error, u *undo) *attachment {
	p := &attachment{ch: make(chan attachResult, 1)}
	if netErr == nil {
		a.attachAsync(ctx, id, name, req, mode, netns, u, p.ch)
	} else {
		p.ch <- attachResult{}
	}
	u.add(func() { p.wait() })
	return p
}

// startShim starts the container's shim, detached in its own session, and waits until it has
// created the container (or failed to).
func (a *Agent) startShim(ctx context.Context, rec api.Container) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	// A record from before log rotation has no LogOpts: it gets the defaults.
	maxSize, maxFile, err := rec.Config.LogLimits()
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", api.ShortID(rec.ID), err)
	}
	bundle := a.bundleDir(rec.ID)
	args := append([]string(nil), a.cfg.ShimCommand[1:]...)
	args = append(args,
		"--id", rec.ID,
		"--bundle", bundle,
		"--runtime", a.cfg.Runtime,
		"--runtime-root", a.runtimeRoot(),
		"--socket", a.shimSocket(rec.ID),
		"--log-path", rec.LogPath,
		"--log-max-size", strconv.FormatInt(maxSize, 10),
		"--log-max-file", strconv.Itoa(maxFile),
		"--exit-file", filepath.Join(a.containerDir(rec.ID), "exit.json"),
		"--debug-log", filepath.Join(bundle, "shim.log"),
	)
	if rec.Config.Tty {
		args = append(args, "--tty")
	}
	if rec.Config.OpenStdin {
		args = append(args, "--stdin")
	}
	cmd := exec.Command(a.cfg.ShimCommand[0], args...)
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, fmt.Errorf("start the shim of container %s: %w", api.ShortID(rec.ID), err)
	}
	w.Close()
	// Reap the shim when it exits while this agent runs; after an agent restart it is init's.
	go func() { _ = cmd.Wait() }()
	var msg shim.ReadyMessage
	if err := json.NewDecoder(r).Decode(&msg); err != nil {
		return 0, fmt.Errorf("container %s: the shim died before reporting (see %s): %w", api.ShortID(rec.ID), filepath.Join(bundle, "shim.log"), errdefs.ErrUnavailable)
	}
	if msg.Error != "" {
		return 0, &CreateError{ExitCode: msg.ExitCode, Err: fmt.Errorf("create container %s: %s: %w", api.ShortID(rec.ID), msg.Error, errdefs.ErrInvalidArgument)}
	}
	return msg.Pid, nil
}

// Start starts a created container.
func (a *Agent) Start(ctx context.Context, ref string) (api.Container, error) {
	c, err := a.lookup(ref)
	if err != nil {
		return api.Container{}, err
	}
	c.ops.Lock()
	defer c.ops.Unlock()
	if again, rec := a.startAgain(ctx, c); again {
		return rec()
	}
	t0 := time.Now()
	st, err := c.shim.Start(ctx)
	if err != nil {
		return api.Container{}, &CreateError{ExitCode: shim.StartErrorCode(err.Error()), Err: err}
	}
	a.metrics.started(time.Since(t0))
	c.mu.Lock()
	if c.rec.State.Status == api.StateCreated { // not when the monitor recorded a (quick) exit already
		c.rec.State = mergeState(c.rec.State, st)
	}
	c.mu.Unlock()
	if err := a.saveRecord(c); err != nil {
		return api.Container{}, err
	}
	if rec := c.snapshot(); rec.State.Status == api.StateRunning {
		a.namesStarted(ctx, rec)
	}
	return c.snapshot(), nil
}

// Kill sends a signal to the container's init.
func (a *Agent) Kill(ctx context.Context, ref string, sig syscall.Signal) error {
	c, err := a.lookup(ref)
	if err != nil {
		return err
	}
	if c.snapshot().State.Status == api.StateExited {
		return fmt.Errorf("kill container %s: it is not running: %w", api.ShortID(c.snapshot().ID), errdefs.ErrConflict)
	}
	if a.stoppedByUser(c) {
		return nil // it was waiting to restart: it stays exited
	}
	return c.shim.Kill(ctx, int(sig))
}

// Stop sends the container's stop signal (--stop-signal, the image's, else SIGTERM), waits up to
// timeout for the exit (negative: the container's --stop-timeout, default 10s), then SIGKILL.
func (a *Agent) Stop(ctx context.Context, ref string, timeout time.Duration) (api.Container, error) {
	c, err := a.lookup(ref)
	if err != nil {
		return api.Container{}, err
	}
	timeout = stopTimeout(c.snapshot().Config, timeout)
	c.ops.Lock()
	defer c.ops.Unlock()
	if err := a.stop(ctx, c, timeout); err != nil {
		return api.Container{}, err
	}
	return c.snapshot(), nil
}

func (a *Agent) stop(ctx context.Context, c *container, timeout time.Duration) error {
	select {
	case <-c.exitedCh():
		a.stoppedByUser(c)
		return nil
	default:
	}
	a.stoppedByUser(c)
	if err := c.shim.Kill(ctx, int(stopSignal(c.snapshot().Config))); err != nil && !errors.Is(err, errdefs.ErrConflict) {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.exitedCh():
		return nil
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := c.shim.Kill(ctx, int(syscall.SIGKILL)); err != nil && !errors.Is(err, errdefs.ErrConflict) {
		return err
	}
	select {
	case <-c.exitedCh():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait blocks until the container has exited (removed: until it is gone) and returns its exit.
func (a *Agent) Wait(ctx context.Context, ref string, removed bool) (api.Exit, error) {
	c, err := a.lookup(ref)
	if err != nil {
		return api.Exit{}, err
	}
	ch := c.exitedCh()
	if removed {
		ch = c.removed
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return api.Exit{}, ctx.Err()
	}
	st := c.snapshot().State
	return api.Exit{ExitCode: st.ExitCode, Error: st.Error}, nil
}

// Remove deletes a container and everything made for it, and returns once all of it is gone. A
// running container is refused unless force, which kills it.
func (a *Agent) Remove(ctx context.Context, ref string, force bool) error {
	done, err := a.remove(ctx, ref, force)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// autoRemoveNow removes an exited --rm container without waiting for its teardown: the container is
// gone (ps, wait --removed, its name) at once, its network and rootfs follow (see remove).
func (a *Agent) autoRemoveNow(id string) {
	if _, err := a.remove(a.ctx, id, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		a.log.Error("auto-remove", "container", api.ShortID(id), "err", err)
	}
}

// remove deletes the container from the agent once no process of it is left, and tears down what
// was made for it in the background; done is closed when that is finished.
func (a *Agent) remove(ctx context.Context, ref string, force bool) (done <-chan struct{}, err error) {
	c, err := a.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.ops.Lock()
	defer c.ops.Unlock()
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return nil, fmt.Errorf("container %s: already removed: %w", api.ShortID(c.rec.ID), errdefs.ErrNotFound)
	}
	rec := c.rec
	c.mu.Unlock()
	running := false
	select {
	case <-c.exitedCh():
	default:
		running = true
		// The shim may already know of an exit the monitor is about to record.
		if st, err := c.shim.State(ctx); err == nil && st.Status == api.StateExited {
			select {
			case <-c.exitedCh():
				running = false
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	if rec.Quarantine != "" && !force {
		return nil, fmt.Errorf("container %s is quarantined (%s): the agent cannot tell what it holds; remove it with force, which kills it and deletes its files, the set-aside record included: %w", api.ShortID(rec.ID), rec.Quarantine, errdefs.ErrConflict)
	}
	if (running || rec.State.Status == api.StateRestarting) && !force {
		return nil, fmt.Errorf("container %s is %s; stop it first, or remove it with force (which kills it): %w", api.ShortID(rec.ID), rec.State.Status, errdefs.ErrConflict)
	}
	// The marker tells a restart after a crash from here on to finish the remove (see recover).
	if err := writeMarker(a.containerDir(rec.ID), removingMarker); err != nil {
		return nil, fmt.Errorf("remove container %s: %w", api.ShortID(rec.ID), err)
	}
	c.mu.Lock()
	c.removing = true
	c.cancelRestart(false)
	c.mu.Unlock()
	a.removeNames(rec) // at once: its address may go to another container
	a.unserve(rec.ID)
	t0 := time.Now()
	// The container is gone (from ps, for wait --removed, for its name) once no process of it is
	// left and its record is deleted; its network, its rootfs, its directories and, when it had
	// already exited, its runtime state (an empty cgroup, the shim) come down in the background, in
	// parallel. Operations that could
	// collide with what they still hold (a static address, a host port, a network or image removal)
	// wait for them (waitTeardowns); a crash in between leaves things that prune removes at start-up.
	td := a.beginTeardown(rec.ID)
	// The runtime delete (through the shim) also ends the shim; a running container is killed by it
	// first, so for one it must finish before the container counts as gone.
	deleteRuntime := func() {
		// Not cancelled with the request (or the agent's shutdown, which waits for it), but bounded.
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, err := c.shim.Delete(bg, true); err != nil {
			// No shim: clean up after the runtime ourselves.
			a.log.Warn("shim delete failed; deleting through the runtime", "container", api.ShortID(rec.ID), "err", err)
			if rec.State.Pid > 0 && running {
				_ = syscall.Kill(rec.State.Pid, syscall.SIGKILL)
			}
			out, rerr := exec.CommandContext(bg, a.cfg.Runtime, "--root", a.runtimeRoot(), "delete", "--force", rec.ID).CombinedOutput()
			if rerr != nil && !strings.Contains(string(out), "does not exist") && !strings.Contains(string(out), "not found") {
				a.log.Warn("runtime delete", "container", api.ShortID(rec.ID), "err", rerr, "out", strings.TrimSpace(string(out)))
			}
			_ = os.Remove(a.shimSocket(rec.ID))
		}
	}
	if running {
		deleteRuntime()
		go a.teardown(rec, t0, nil, td)
	} else {
		go a.teardown(rec, t0, deleteRuntime, td)
	}
	c.closeExited(c.exitedCh())
	if err := os.Remove(filepath.Join(a.containerDir(rec.ID), recordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("remove container record", "container", api.ShortID(rec.ID), "err", err)
	}
	a.mu.Lock()
	delete(a.containers, rec.ID)
	if a.names[rec.Name] == rec.ID {
		delete(a.names, rec.Name)
	}
	a.mu.Unlock()
	close(c.removed)
	a.log.Debug("container gone", "container", api.ShortID(rec.ID), "took", time.Since(t0))
	return td, nil
}

// beginTeardown registers the background teardown of container id (see Remove); the caller must run
// teardown, which marks it done. The agent's shutdown (Close) waits for it.
func (a *Agent) beginTeardown(id string) chan struct{} {
	done := make(chan struct{})
	a.wg.Add(1)
	a.mu.Lock()
	a.teardowns[id] = done
	a.mu.Unlock()
	return done
}

// teardown detaches the networks of a removed container and releases its rootfs, in parallel with
// deleteRuntime (when not nil: the container had exited), then removes its directories and closes
// done.
func (a *Agent) teardown(rec api.Container, t0 time.Time, deleteRuntime func(), done chan struct{}) {
	defer a.wg.Done()
	var tNet, tRoot, tShim time.Duration
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if deleteRuntime != nil {
			deleteRuntime()
		}
		tShim = time.Since(t0)
	}()
	go func() {
		defer wg.Done()
		a.teardownNetwork(rec)
		if rec.Quarantine != "" {
			a.pruneEndpoints(rec.ID) // its record, which named its networks, is lost
		}
		tNet = time.Since(t0)
	}()
	go func() {
		defer wg.Done()
		if a.cfg.Images != nil && !filepath.IsAbs(rec.Image) {
			if err := a.cfg.Images.Release(context.Background(), rec.ID); err != nil {
				a.log.Warn("release rootfs", "container", api.ShortID(rec.ID), "err", err)
			}
		}
		tRoot = time.Since(t0)
	}()
	wg.Wait()
	_ = os.RemoveAll(a.bundleDir(rec.ID))
	if err := os.RemoveAll(a.containerDir(rec.ID)); err != nil {
		a.log.Warn("remove container state", "container", api.ShortID(rec.ID), "err", err)
	}
	a.mu.Lock()
	delete(a.teardowns, rec.ID)
	a.mu.Unlock()
	close(done)
	a.log.Info("container removed", "container", api.ShortID(rec.ID), "shim", tShim, "network", tNet, "rootfs", tRoot, "total", time.Since(t0))
}

// waitTeardowns waits until the background teardowns of removed containers (started before the call)
// are done, so that their addresses, host ports, networks and images are free.
func (a *Agent) waitTeardowns(ctx context.Context) error {
	a.mu.Lock()
	pending := make([]chan struct{}, 0, len(a.teardowns))
	for _, ch := range a.teardowns {
		pending = append(pending, ch)
	}
	a.mu.Unlock()
	for _, ch := range pending {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Resize sets the size of the container's terminal.
func (a *Agent) Resize(ctx context.Context, ref string, ws api.Winsize) error {
	c, err := a.lookup(ref)
	if err != nil {
		return err
	}
	return c.shim.Resize(ctx, ws)
}

// Attach opens the container's stream (see shim.Client.Attach).
func (a *Agent) Attach(ctx context.Context, ref string) (net.Conn, *bufio.Reader, error) {
	c, err := a.lookup(ref)
	if err != nil {
		return nil, nil, err
	}
	select {
	case <-c.exitedCh():
		return nil, nil, fmt.Errorf("attach to container %s: it has exited: %w", api.ShortID(c.snapshot().ID), errdefs.ErrConflict)
	default:
	}
	return c.shim.Attach(ctx)
}

// Exec runs a process in a running container and returns its stream.
func (a *Agent) Exec(ctx context.Context, ref string, cfg api.ExecConfig) (net.Conn, *bufio.Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	c, err := a.lookup(ref)
	if err != nil {
		return nil, nil, err
	}
	rec := c.snapshot()
	if rec.State.Status != api.StateRunning {
		return nil, nil, fmt.Errorf("exec in container %s: it is %s, not running: %w", api.ShortID(rec.ID), rec.State.Status, errdefs.ErrConflict)
	}
	var spec specs.Spec
	if err := readJSONFile(filepath.Join(a.bundleDir(rec.ID), "config.json"), &spec); err != nil {
		return nil, nil, fmt.Errorf("exec in container %s: read its spec: %w", api.ShortID(rec.ID), err)
	}
	p := *spec.Process
	p.Args = cfg.Cmd
	p.Terminal = cfg.Tty
	p.Env = mergeEnv(p.Env, cfg.Env)
	if cfg.Tty {
		p.Env = mergeEnv(p.Env, []string{"TERM=xterm"})
	}
	if cfg.WorkingDir != "" {
		p.Cwd = cfg.WorkingDir
	}
	if cfg.User != "" {
		u, err := resolveUser(spec.Root.Path, cfg.User, rec.Config.GroupAdd...)
		if err != nil {
			return nil, nil, err
		}
		p.User = u
	}
	p.ConsoleSize = nil
	return c.shim.Exec(ctx, shim.ExecRequest{Process: p, Stdin: cfg.Stdin})
}

// logOptsWithDefaults returns opts with the rotation defaults filled in, so that a container's record
// says what applies to it.
func logOptsWithDefaults(opts map[string]string) map[string]string {
	out := map[string]string{"max-size": api.DefaultLogMaxSize, "max-file": api.DefaultLogMaxFile}
	for k, v := range opts {
		out[k] = v
	}
	return out
}

// Logs writes the container's log as frames to w: the last tail entries (tail < 0: all), then with
// follow the live output until the container exits or ctx ends.
func (a *Agent) Logs(ctx context.Context, ref string, follow bool, tail int, w io.Writer) error {
	c, err := a.lookup(ref)
	if err != nil {
		return err
	}
	rec := c.snapshot()
	running := true
	select {
	case <-c.exitedCh():
		running = false
	default:
	}
	if running {
		rc, err := c.shim.Logs(ctx, follow, tail)
		if err == nil {
			defer rc.Close()
			_, err = io.Copy(w, rc)
			if follow && err == nil {
				// Answer once the exit is recorded, so the next command sees it.
				select {
				case <-c.exitedCh():
				case <-ctx.Done():
				}
			}
			return err
		}
		a.log.Warn("logs through the shim failed; reading the file", "container", api.ShortID(rec.ID), "err", err)
	}
	fw := api.NewFrameWriter(w)
	_, err = shim.ReadLog(rec.LogPath, tail, func(e shim.LogEntry) error {
		t := api.FrameStdout
		if e.Stream == "stderr" {
			t = api.FrameStderr
		}
		return fw.Write(t, []byte(e.Log))
	})
	return err
}
