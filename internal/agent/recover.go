package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/atomicfile"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/image"
	"github.com/ovnet/ov/internal/shim"
)

// Markers in a container's directory under Root that say its directory may go without a record:
// creatingMarker from the start of a create until it completes (its record names its pid), removingMarker from
// the start of a remove. A directory without a readable record and without a marker is a container
// whose record was lost (a crash of the machine, a damaged disk): it is quarantined, never pruned.
const (
	creatingMarker = "creating"
	removingMarker = "removing"
	recordFile     = "container.json"
	// quarantinePrefix names a record set aside: container.json.corrupt-<UTC time>.
	quarantinePrefix = recordFile + ".corrupt-"
)

// recover loads every container record and reconnects to its shim; a container whose shim is gone
// gets the status its exit file recorded. A container whose record cannot be read, or is missing
// while something of it is left (its directory, bundle, runtime state or rootfs), is quarantined
// (see quarantine); only what interrupted creates and removes left (marked) is pruned.
func (a *Agent) recover() error {
	entries, err := os.ReadDir(filepath.Join(a.cfg.Root, "containers"))
	if err != nil {
		return err
	}
	discard := map[string]bool{}
	var exited []*container
	for _, e := range entries {
		id := e.Name()
		rec, readErr := a.readRecord(id)
		if a.interrupted(id, rec, readErr) {
			// A remove (or a create) was interrupted: prune drops the rest.
			discard[id] = true
			continue
		}
		if readErr != nil {
			if c := a.quarantine(id, readErr); c != nil && c.rec.State.Status == api.StateExited {
				exited = append(exited, c)
			}
			continue
		}
		if c := a.load(rec); c != nil {
			exited = append(exited, c)
		}
	}
	a.adoptLeftovers(discard)
	a.prune(discard)
	// After prune: deleting the runtime's container through its shim needs the bundle.
	for id := range discard {
		a.log.Info("removing the directories of an interrupted create or remove", "container", api.ShortID(id))
		_ = os.RemoveAll(a.bundleDir(id))
		_ = os.RemoveAll(a.containerDir(id))
	}
	a.restoreAllNames()
	for _, c := range exited {
		a.autoRemove(c) // --rm containers that exited while the agent was away
	}
	a.resumeRestarts()
	a.log.Info("state loaded", "containers", len(a.containers))
	return nil
}

// readRecord reads container id's record; a record that does not name its directory is unreadable.
func (a *Agent) readRecord(id string) (api.Container, error) {
	var rec api.Container
	if err := readJSONFile(filepath.Join(a.containerDir(id), recordFile), &rec); err != nil {
		return rec, err
	}
	if rec.ID != id {
		return rec, fmt.Errorf("the record names container %q, not its directory's", api.ShortID(rec.ID))
	}
	return rec, nil
}

// interrupted tells whether container id's directory is what a remove, or a create that did not
// complete, left: both mark the directory first. A create is complete once its record names the
// container's pid (the last thing Create writes, with its endpoints); a first record without one is
// an interrupted create (the user was never told it exists), and so is no record at all. An
// unreadable record is not judged here: it is quarantined.
func (a *Agent) interrupted(id string, rec api.Container, readErr error) bool {
	if exists(filepath.Join(a.containerDir(id), removingMarker)) {
		return true
	}
	marker := filepath.Join(a.containerDir(id), creatingMarker)
	if !exists(marker) {
		return false
	}
	switch {
	case errors.Is(readErr, os.ErrNotExist):
		return true
	case readErr != nil:
		return false
	case rec.State.Pid == 0 && rec.State.Status == api.StateCreated:
		return true
	default: // complete: the marker's removal was lost (a power cut)
		_ = os.Remove(marker)
		return false
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// load registers the container of a readable record and reconnects to its shim. It returns the
// container when it has exited (for autoRemove), nil when it runs.
func (a *Agent) load(rec api.Container) *container {
	c := a.newContainer(rec)
	a.register(c)
	if rec.State.Status == api.StateExited {
		c.closeExited(c.exitedCh())
		return c
	}
	st, err := c.shim.State(a.ctx)
	if rec.State.Status == api.StateRestarting && (err != nil || st.Status != api.StateRunning) {
		// Waiting for its delay when the agent stopped (or its new run never started): resumeRestarts.
		c.closeExited(c.exitedCh())
		return c
	}
	if err != nil {
		st = a.exitFromFile(rec.ID)
	}
	c.rec.State = mergeState(c.rec.State, st)
	_ = a.saveRecord(c)
	if c.rec.State.Status == api.StateExited {
		c.closeExited(c.exitedCh())
		return c
	}
	a.monitor(c)
	return nil
}

func (a *Agent) register(c *container) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.containers[c.rec.ID] = c
	if c.rec.Name != "" {
		a.names[c.rec.Name] = c.rec.ID
	}
}

// quarantine sets aside container id's unreadable record (renamed, never deleted: see
// quarantineRecord) and adopts the container from what it left, so that it keeps running and
// nothing of it is pruned. It returns the container, nil when it could not be adopted.
func (a *Agent) quarantine(id string, readErr error) *container {
	if !validID(id) {
		a.log.Warn("ignoring a directory that is not a container's", "dir", a.containerDir(id))
		return nil
	}
	reason, err := a.quarantineRecord(id, readErr)
	if err != nil {
		a.log.Error("quarantine container record", "container", api.ShortID(id), "err", err)
	}
	return a.adopt(id, reason)
}

// quarantineRecord moves container id's unreadable record aside (flushing the rename) and returns the
// reason reported for the container.
func (a *Agent) quarantineRecord(id string, readErr error) (string, error) {
	dir := a.containerDir(id)
	if errors.Is(readErr, os.ErrNotExist) {
		if old := quarantined(dir); old != "" {
			var rec api.Container
			if err := readJSONFile(filepath.Join(dir, old), &rec); err != nil {
				return fmt.Sprintf("record unreadable (%v), set aside as %s", err, old), nil
			}
			return "record unreadable, set aside as " + old, nil
		}
		return "record missing", nil
	}
	name := quarantinePrefix + time.Now().UTC().Format("20060102T150405.000000000Z")
	reason := fmt.Sprintf("record unreadable (%v), set aside as %s", readErr, name)
	if err := os.Rename(filepath.Join(dir, recordFile), filepath.Join(dir, name)); err != nil {
		return fmt.Sprintf("record unreadable (%v)", readErr), err
	}
	return reason, atomicfile.SyncDir(dir)
}

// quarantined names the newest record set aside in dir, "" when there is none.
func quarantined(dir string) string {
	matches, _ := filepath.Glob(filepath.Join(dir, quarantinePrefix+"*"))
	if len(matches) == 0 {
		return ""
	}
	sort.Strings(matches)
	return filepath.Base(matches[len(matches)-1])
}

func validID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for _, r := range id {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

// adopt registers container id, whose record is unreadable or missing, as quarantined with reason,
// from what it left: its bundle's spec (command, rootfs), its log, its namespace, and its state from
// its shim (or its exit file). It is logged once, at warn level.
func (a *Agent) adopt(id, reason string) *container {
	rec := api.Container{ID: id, Quarantine: reason, State: api.ContainerState{Status: api.StateUnknown}}
	var spec specs.Spec
	if err := readJSONFile(filepath.Join(a.bundleDir(id), "config.json"), &spec); err == nil {
		if spec.Process != nil {
			rec.Command = spec.Process.Args
		}
		if spec.Root != nil {
			rec.Rootfs = spec.Root.Path
		}
	}
	for _, p := range []string{a.containerDir(id), a.bundleDir(id)} {
		if fi, err := os.Stat(p); err == nil {
			rec.Created = fi.ModTime().UTC()
			break
		}
	}
	if log := filepath.Join(a.containerDir(id), id+"-json.log"); exists(log) {
		rec.LogPath = log
	}
	if ns := filepath.Join(a.cfg.RunDir, "netns", id); a.cfg.Netns != nil && exists(ns) {
		rec.NetNS = ns
	}
	rec.Image, rec.ImageID = a.imageOf(id)
	c := a.newContainer(rec)
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	st, err := c.shim.State(ctx)
	cancel()
	switch {
	case err == nil:
		c.rec.State = st
	case exists(filepath.Join(a.containerDir(id), "exit.json")):
		c.rec.State = a.exitFromFile(id)
	default:
		c.rec.State.Error = "no record, and its shim does not answer"
	}
	a.register(c)
	a.log.Warn("container quarantined: kept running as found; remove it with rm -f when it is not wanted",
		"container", api.ShortID(id), "reason", reason, "status", c.rec.State.Status, "pid", c.rec.State.Pid)
	switch c.rec.State.Status {
	case api.StateExited:
		c.closeExited(c.exitedCh())
	case api.StateUnknown:
	default:
		a.monitor(c)
	}
	return c
}

// imageOf names the image of container id's rootfs (its first tag, else its ID) and its ID, from
// the image store; "" when the store has no rootfs for it.
func (a *Agent) imageOf(id string) (name, imageID string) {
	for _, p := range a.prepared() {
		if p.ContainerID != id {
			continue
		}
		name = p.ImageID
		if img, err := a.cfg.Images.Get(a.ctx, p.ImageID); err == nil && len(img.RepoTags) > 0 {
			name = img.RepoTags[0]
		}
		return name, p.ImageID
	}
	return "", ""
}

// adoptLeftovers quarantines the containers of which something is left (a bundle, runtime state or
// rootfs) but neither a directory under Root nor a record (not pruned: discard).
func (a *Agent) adoptLeftovers(discard map[string]bool) {
	found := map[string]string{}
	for _, src := range []struct{ dir, what string }{
		{filepath.Join(a.cfg.RunDir, "containers"), "bundle"},
		{a.runtimeRoot(), "runtime state"},
	} {
		entries, _ := os.ReadDir(src.dir)
		for _, e := range entries {
			if _, ok := found[e.Name()]; !ok && e.IsDir() {
				found[e.Name()] = src.what
			}
		}
	}
	for _, p := range a.prepared() {
		if _, ok := found[p.ContainerID]; !ok {
			found[p.ContainerID] = "rootfs"
		}
	}
	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if discard[id] || !validID(id) || a.known(id) {
			continue
		}
		a.adopt(id, fmt.Sprintf("record missing with its directory; found its %s", found[id]))
	}
}

func (a *Agent) known(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.containers[id]
	return ok
}

// prepared lists the rootfs the image store holds for containers.
func (a *Agent) prepared() []image.Prepared {
	if a.cfg.Images == nil {
		return nil
	}
	lister, ok := a.cfg.Images.(interface {
		Prepared(context.Context) ([]image.Prepared, error)
	})
	if !ok {
		return nil
	}
	out, _ := lister.Prepared(a.ctx)
	return out
}

// prune drops what drivers and the namespace directory hold for containers the agent does not know
// (network endpoints and namespaces, which no process of a known container uses), and the shims and
// rootfs of interrupted creates and removes (discard). It never ends a shim or releases a rootfs of
// a container it did not find marked as such: those were adopted (quarantined) by recover.
func (a *Agent) prune(discard map[string]bool) {
	for name, d := range a.cfg.Drivers {
		if p, ok := d.(driver.Pruner); ok {
			if err := p.Prune(a.ctx, a.known); err != nil {
				a.log.Warn("prune network endpoints", "driver", name, "err", err)
			}
		}
	}
	a.pruneShims(discard)
	for _, p := range a.prepared() {
		if discard[p.ContainerID] && !a.known(p.ContainerID) {
			a.log.Info("releasing the rootfs of a removed container", "container", api.ShortID(p.ContainerID))
			if err := a.cfg.Images.Release(a.ctx, p.ContainerID); err != nil {
				a.log.Warn("release rootfs", "container", api.ShortID(p.ContainerID), "err", err)
			}
		}
	}
	if a.cfg.Netns == nil {
		return
	}
	entries, _ := os.ReadDir(filepath.Join(a.cfg.RunDir, "netns"))
	for _, e := range entries {
		if len(e.Name()) == 64 && !a.known(e.Name()) {
			a.log.Info("removing the network namespace of an unknown container", "container", api.ShortID(e.Name()))
			if err := a.cfg.Netns.RemoveNetns(a.ctx, e.Name()); err != nil {
				a.log.Warn("remove netns", "container", api.ShortID(e.Name()), "err", err)
			}
		}
	}
}

// pruneShims deletes the containers (which ends their shims) of interrupted creates and removes
// (discard), and the sockets of dead shims. A live shim of a container the agent cannot name is left
// running, with a warning.
func (a *Agent) pruneShims(discard map[string]bool) {
	socks, _ := filepath.Glob(filepath.Join(a.cfg.RunDir, "shims", "*.sock"))
	for _, sock := range socks {
		short := strings.TrimSuffix(filepath.Base(sock), ".sock")
		if len(short) != 12 || a.knownPrefix(short) {
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
		cl := shim.NewClient(sock)
		switch {
		case hasPrefix(discard, short):
			a.log.Info("deleting the container of an interrupted create or remove", "container", short)
			if _, err := cl.Delete(ctx, true); err != nil {
				_ = os.Remove(sock)
			}
		default:
			if _, err := cl.State(ctx); err != nil {
				_ = os.Remove(sock) // nothing answers: a dead shim's socket
			} else {
				a.log.Warn("left running: a shim of a container of which nothing else is left; "+
					"stop it by hand if it is not wanted", "container", short, "socket", sock)
			}
		}
		cancel()
	}
}

func hasPrefix(ids map[string]bool, short string) bool {
	for id := range ids {
		if strings.HasPrefix(id, short) {
			return true
		}
	}
	return false
}

// exitFromFile reads the exit file a shim left; without one the shim died without recording.
func (a *Agent) exitFromFile(id string) api.ContainerState {
	var st api.ContainerState
	if err := readJSONFile(filepath.Join(a.containerDir(id), "exit.json"), &st); err == nil {
		return st
	}
	return api.ContainerState{Status: api.StateExited, ExitCode: 255, Error: "the container's shim is gone and recorded no exit"}
}

// pruneEndpoints drops what the drivers hold for container id (removed while quarantined: its
// networks are not known).
func (a *Agent) pruneEndpoints(id string) {
	for name, d := range a.cfg.Drivers {
		if p, ok := d.(driver.Pruner); ok {
			if err := p.Prune(context.Background(), func(other string) bool { return other != id }); err != nil {
				a.log.Warn("prune network endpoints", "driver", name, "container", api.ShortID(id), "err", err)
			}
		}
	}
}

// writeMarker creates the (empty) marker file name in dir (and dir when a quarantined container has
// none). It is not flushed: when a crash of the machine loses it, a restart quarantines what the
// remove left instead of finishing the remove, which deletes nothing.
func writeMarker(dir, name string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), nil, 0o600)
}
