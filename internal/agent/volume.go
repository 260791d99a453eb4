package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// Named volumes (docker's local driver): ROOT/volumes/NAME/_data is the volume's content and
// ROOT/volumes/NAME/volume.json its record (name, creation time, labels). A volume lives until it is
// removed: containers come and go, the agent restarts. A volume that a container (in any state) names,
// or that a create under way is mounting, cannot be removed.

// volumes guards the agent's volumes; its zero value is ready.
type volumes struct {
	mu sync.Mutex
	// pending: volume name -> IDs of the creates that mount it. A create counts while its container
	// holds its name (see pendingUsers): until it fails, or for as long as the container exists.
	pending map[string]map[string]bool
}

func (a *Agent) volumesDir() string { return filepath.Join(a.cfg.Root, "volumes") }

func (a *Agent) volumeDir(name string) string { return filepath.Join(a.volumesDir(), name) }

// volumeData is the directory a volume's content lives in (its Mountpoint).
func volumeData(volumesDir, name string) string { return filepath.Join(volumesDir, name, "_data") }

// volumeRoutes adds the volume API under v (/volumes...).
func (a *Agent) volumeRoutes(mux *http.ServeMux, v string) {
	mux.HandleFunc("GET "+v+"/volumes", func(w http.ResponseWriter, r *http.Request) {
		vs, err := a.Volumes()
		reply(w, vs, err)
	})
	mux.HandleFunc("POST "+v+"/volumes", func(w http.ResponseWriter, r *http.Request) {
		var req api.VolumeCreate
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, fmt.Errorf("volume create: bad request body: %v: %w", err, errdefs.ErrInvalidArgument))
			return
		}
		vol, err := a.CreateVolume(req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, vol)
	})
	mux.HandleFunc("GET "+v+"/volumes/{name}", func(w http.ResponseWriter, r *http.Request) {
		vol, err := a.Volume(r.PathValue("name"))
		reply(w, vol, err)
	})
	mux.HandleFunc("DELETE "+v+"/volumes/{name}", func(w http.ResponseWriter, r *http.Request) {
		replyEmpty(w, a.RemoveVolume(r.PathValue("name"), r.URL.Query().Get("force") == "1"))
	})
}

// CreateVolume creates a volume; an empty name gets a random one. Creating a volume that exists
// answers it (labels are not changed), as docker does.
func (a *Agent) CreateVolume(req api.VolumeCreate) (api.Volume, error) {
	if err := req.Validate(); err != nil {
		return api.Volume{}, err
	}
	if req.Name == "" {
		req.Name = newID()
	}
	a.vols.mu.Lock()
	defer a.vols.mu.Unlock()
	v, _, err := a.ensureVolumeLocked(req.Name, req.Labels)
	return v, err
}

// ensureVolumeLocked returns the volume name, creating it (with labels) when missing; created says so.
func (a *Agent) ensureVolumeLocked(name string, labels map[string]string) (v api.Volume, created bool, err error) {
	if v, err := a.readVolume(name); err == nil || !errors.Is(err, errdefs.ErrNotFound) {
		return v, false, err
	}
	if err := os.MkdirAll(a.volumesDir(), 0o700); err != nil {
		return api.Volume{}, false, fmt.Errorf("volume %s: %w", name, err)
	}
	// Creates are serialised (vols.mu): a .new- directory here is what a crash left.
	if stale, _ := filepath.Glob(filepath.Join(a.volumesDir(), ".new-*")); len(stale) > 0 {
		for _, d := range stale {
			_ = os.RemoveAll(d)
		}
	}
	// Made aside and renamed into place, so that a crash never leaves a volume without its record.
	tmp, err := os.MkdirTemp(a.volumesDir(), ".new-")
	if err != nil {
		return api.Volume{}, false, fmt.Errorf("volume %s: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	if labels == nil {
		labels = map[string]string{}
	}
	v = api.Volume{Name: name, Driver: api.VolumeDriverLocal, Mountpoint: volumeData(a.volumesDir(), name),
		CreatedAt: time.Now().UTC().Truncate(time.Second), Labels: labels, Options: map[string]string{}, Scope: "local"}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return api.Volume{}, false, err
	}
	if err := os.Mkdir(filepath.Join(tmp, "_data"), 0o755); err != nil {
		return api.Volume{}, false, fmt.Errorf("volume %s: %w", name, err)
	}
	if err := writeJSONFileSync(filepath.Join(tmp, "volume.json"), v); err != nil {
		return api.Volume{}, false, fmt.Errorf("volume %s: %w", name, err)
	}
	if err := os.Rename(tmp, a.volumeDir(name)); err != nil {
		return api.Volume{}, false, fmt.Errorf("volume %s: %w", name, err)
	}
	a.log.Info("volume created", "volume", name)
	return v, true, nil
}

// readVolume reads the record of volume name.
func (a *Agent) readVolume(name string) (api.Volume, error) {
	if err := api.ValidateVolumeName(name); err != nil {
		return api.Volume{}, fmt.Errorf("get %s: no such volume: %w", name, errdefs.ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(a.volumeDir(name), "volume.json"))
	if errors.Is(err, os.ErrNotExist) {
		return api.Volume{}, fmt.Errorf("get %s: no such volume; create it with ovctl volume create %s: %w", name, name, errdefs.ErrNotFound)
	}
	if err != nil {
		return api.Volume{}, fmt.Errorf("volume %s: %w", name, err)
	}
	var v api.Volume
	if err := json.Unmarshal(b, &v); err != nil {
		return api.Volume{}, fmt.Errorf("volume %s: unreadable record %s: %v", name, filepath.Join(a.volumeDir(name), "volume.json"), err)
	}
	v.Mountpoint = volumeData(a.volumesDir(), name) // follows the agent's root if it moved
	return v, nil
}

// Volume returns one volume.
func (a *Agent) Volume(name string) (api.Volume, error) { return a.readVolume(name) }

// Volumes lists the volumes by name.
func (a *Agent) Volumes() ([]api.Volume, error) {
	entries, err := os.ReadDir(a.volumesDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	out := []api.Volume{}
	for _, e := range entries {
		if !e.IsDir() || !api.ValidVolumeName(e.Name()) {
			continue
		}
		if v, err := a.readVolume(e.Name()); err == nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// volumeUsers returns the IDs of the containers that name volume name.
func (a *Agent) volumeUsers(name string) []string {
	var ids []string
	for _, c := range a.containerList() {
		rec := c.snapshot()
		for _, m := range rec.Config.Mounts {
			if m.MountType() == api.MountVolume && m.Source == name {
				ids = append(ids, rec.ID)
				break
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// RemoveVolume removes a volume and its content. It refuses while a container uses it (whatever its
// state, as docker); force only makes a missing volume no error.
func (a *Agent) RemoveVolume(name string, force bool) error {
	a.vols.mu.Lock()
	defer a.vols.mu.Unlock()
	if _, err := a.readVolume(name); err != nil {
		if force && errors.Is(err, errdefs.ErrNotFound) {
			return nil
		}
		return err
	}
	if users := append(a.volumeUsers(name), a.pendingUsersLocked(name)...); len(users) > 0 {
		short := make([]string, len(users))
		for i, id := range users {
			short[i] = api.ShortID(id)
		}
		return fmt.Errorf("remove %s: volume is in use - [%s]; remove those containers first (ovctl rm): %w", name, strings.Join(short, ", "), errdefs.ErrConflict)
	}
	// Renamed out of sight first: a crash while deleting leaves no half volume under its name (and
	// what such a crash left is deleted now).
	gone := filepath.Join(a.volumesDir(), ".rm-"+name)
	_ = os.RemoveAll(gone)
	if err := os.Rename(a.volumeDir(name), gone); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	a.log.Info("volume removed", "volume", name)
	return nil
}

// prepareMounts readies the host side of create id's mounts once its rootfs is there: a -v bind
// source is made when missing (a --mount one must exist), a named volume is created when missing and,
// when empty, filled with what the image has at the mount's target (docker's copy-up, unless NoCopy).
// The volumes count as in use by the create from then on (pendingUsers).
func (a *Agent) prepareMounts(id string, ms []api.Mount, rootfs string) error {
	for _, m := range ms {
		var err error
		switch m.MountType() {
		case api.MountBind:
			err = prepareBind(m)
		case api.MountVolume:
			err = a.prepareVolume(id, m, rootfs)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// pendingUsersLocked returns the creates under way that mount volume name, forgetting those that
// ended (the container exists, so volumeUsers counts it, or the create failed and released its
// name).
func (a *Agent) pendingUsersLocked(name string) []string {
	a.mu.Lock()
	live := map[string]bool{}
	for _, id := range a.names {
		if _, done := a.containers[id]; !done {
			live[id] = true
		}
	}
	a.mu.Unlock()
	var ids []string
	for id := range a.vols.pending[name] {
		if live[id] {
			ids = append(ids, id)
		} else {
			delete(a.vols.pending[name], id)
		}
	}
	if len(a.vols.pending[name]) == 0 {
		delete(a.vols.pending, name)
	}
	return ids
}

func prepareBind(m api.Mount) error {
	if _, err := os.Stat(m.Source); err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if !m.CreateSource {
		return fmt.Errorf("invalid mount config for type \"bind\": bind source path does not exist: %s; create it first or use -v, which creates it: %w", m.Source, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(m.Source, 0o755); err != nil {
		return fmt.Errorf("create the bind source %s: %w", m.Source, err)
	}
	return nil
}

func (a *Agent) prepareVolume(id string, m api.Mount, rootfs string) error {
	a.vols.mu.Lock()
	defer a.vols.mu.Unlock()
	v, _, err := a.ensureVolumeLocked(m.Source, nil)
	if err != nil {
		return err
	}
	a.pendingUsersLocked(m.Source) // forgets ended creates
	if a.vols.pending == nil {
		a.vols.pending = map[string]map[string]bool{}
	}
	if a.vols.pending[m.Source] == nil {
		a.vols.pending[m.Source] = map[string]bool{}
	}
	a.vols.pending[m.Source][id] = true
	if m.NoCopy || rootfs == "" {
		return nil
	}
	if err := copyUp(rootfs, m.Destination, v.Mountpoint); err != nil {
		return fmt.Errorf("volume %s: copy the image's %s into it: %w", m.Source, m.Destination, err)
	}
	return nil
}

// copyUp copies the image's directory target (resolved inside rootfs, never outside it) into the
// volume directory data when data is empty, as docker does for a new volume: content, owners, modes
// and the directory's own owner and mode. Nothing happens when the image has no directory there.
func copyUp(rootfs, target, data string) error {
	entries, err := os.ReadDir(data)
	if err != nil || len(entries) > 0 {
		return err
	}
	root, err := os.Open(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	fd, err := unix.Openat2(int(root.Fd()), strings.TrimPrefix(filepath.Clean(target), "/"), &unix.OpenHow{
		Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	src := os.NewFile(uintptr(fd), target)
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	// cp -a (no symlink followed below the top, which openat2 resolved inside the rootfs) reads the
	// directory through the descriptor handed to it as fd 3.
	cmd := exec.CommandContext(context.Background(), "cp", "-a", "--", "/proc/self/fd/3/.", data+"/")
	cmd.ExtraFiles = []*os.File{src}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.Lchown(data, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return os.Chmod(data, os.FileMode(st.Mode&0o777)|unixModeBits(st.Mode))
}

// unixModeBits are the setuid, setgid and sticky bits of a stat mode as os.FileMode bits.
func unixModeBits(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}
