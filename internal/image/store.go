package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ovnet/ov/internal/atomicfile"
	"github.com/ovnet/ov/internal/errdefs"
)

// Image is one image in the store.
type Image struct {
	// ID is "sha256:<hex>", the digest of the image's config (as docker shows it).
	ID string `json:"id"`
	// RepoTags are the image's references, "name:tag" (docker.io/library/ is dropped), sorted.
	RepoTags []string `json:"repoTags"`
	// Layers are the diff IDs ("sha256:<hex>") of the layers, bottom first.
	Layers []string `json:"layers"`
	// Config is what a container made from the image runs.
	Config RunConfig `json:"config"`
	// Size is the bytes of file content over all layers.
	Size int64 `json:"size"`
	// Created is when the image was built (from its config), or imported.
	Created      time.Time `json:"created"`
	OS           string    `json:"os,omitempty"`
	Architecture string    `json:"architecture,omitempty"`
}

// RunConfig is the part of an image's config a container spec is built from.
type RunConfig struct {
	Env          []string          `json:"env,omitempty"`
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	WorkingDir   string            `json:"workingDir,omitempty"`
	User         string            `json:"user,omitempty"`
	ExposedPorts []string          `json:"exposedPorts,omitempty"` // "80/tcp", sorted
	Volumes      []string          `json:"volumes,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	StopSignal   string            `json:"stopSignal,omitempty"`
}

// Config configures a Store.
type Config struct {
	// Root is the store's directory. Default /var/lib/ov/images. It may not contain ',' or ':'
	// (overlayfs mount options would misread it).
	Root string
	// Log receives the store's logs. Default: discarded.
	Log *slog.Logger
	// InUse, if set, reports whether a container the caller knows of (beyond those prepared with
	// Prepare and not yet released, which the store tracks itself) uses imageID; Remove refuses such
	// an image. It is called with the store's lock held and must not call back into the Store.
	InUse func(imageID string) bool
	// Platform is the OS/architecture chosen from multi-platform OCI archives. Default
	// "linux/"+runtime.GOARCH.
	Platform string
	// Registry says how Pull, Push and Login reach registries (CA certificates, insecure registries).
	Registry RegistryConfig
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config {
	return Config{
		Root:     "/var/lib/ov/images",
		Log:      slog.New(slog.DiscardHandler),
		Platform: defaultPlatform(),
		Registry: RegistryConfig{CertsDir: DefaultCertsDir},
	}
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	switch {
	case c.Root == "" || !filepath.IsAbs(c.Root):
		return errf(errdefs.ErrInvalidArgument, "image store root %q must be an absolute path", c.Root)
	case strings.ContainsAny(c.Root, ",:"):
		return errf(errdefs.ErrInvalidArgument, "image store root %q may not contain ',' or ':' (overlayfs options); choose another directory", c.Root)
	case c.Log == nil:
		return errf(errdefs.ErrInvalidArgument, "image store: no logger")
	case !strings.Contains(c.Platform, "/"):
		return errf(errdefs.ErrInvalidArgument, "image store platform %q: want OS/ARCH, e.g. linux/amd64", c.Platform)
	}
	return nil
}

// Store is the local image store. It is safe for concurrent use within one process; two processes
// must not open the same Root.
type Store struct {
	cfg  Config
	log  *slog.Logger
	root string

	mu         sync.Mutex
	images     map[string]*Image    // by ID
	layers     map[string]layerInfo // by diff ID
	pins       map[string]int       // diff ID -> loads in progress using it
	containers map[string]string    // container ID -> image ID
	// forceFsopen makes Prepare use the fsopen/lowerdir+ mount path (tests).
	forceFsopen bool
}

type layerInfo struct {
	Size      int64 `json:"size"`
	Whiteouts int   `json:"whiteouts,omitempty"`
}

// index is index.json.
type index struct {
	Version int                  `json:"version"`
	Images  []*Image             `json:"images"`
	Layers  map[string]layerInfo `json:"layers"`
}

const indexVersion = 1

// New opens (creating if needed) the store at cfg.Root, removes debris of interrupted loads and
// layers no image names, and returns it.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := makePrivateDirs(cfg.Root); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	root, err := filepath.EvalSymlinks(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	s := &Store{
		cfg:        cfg,
		log:        cfg.Log.With("component", "image"),
		root:       root,
		images:     map[string]*Image{},
		layers:     map[string]layerInfo{},
		pins:       map[string]int{},
		containers: map[string]string{},
	}
	if err := s.clearTmp(); err != nil {
		return nil, err
	}
	if err := s.readIndex(); err != nil {
		return nil, err
	}
	if err := s.readContainers(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.collectLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// privateMode is the mode of every directory the store makes for itself: root's alone. A container's
// files are reached through its mount namespace (the runtime pivots into the rootfs as root before
// it drops to the container's user), never through these paths, so no traversal bit is needed; with
// one, any host user who learns a container ID could reach a setuid binary or a device node made
// inside it (the class of Docker's CVE-2021-41091).
const privateMode = 0o700

// makePrivateDirs creates the store's directories 0700 and tightens those an older version made
// traversable (0711, 0755): the root, tmp/, layers/, layers/sha256/, containers/ and each
// containers/<id>/ with its work/ dir. Layer directories and a container's upper/ and rootfs/ keep
// their own modes: they are the image's "/" as the container sees it, and their parents shut them off.
func makePrivateDirs(root string) error {
	for _, d := range []string{"", "tmp", "layers", "layers/sha256", "containers"} {
		if err := privateDir(filepath.Join(root, d)); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(filepath.Join(root, "containers"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, "containers", e.Name())
		if err := privateDir(dir); err != nil {
			return err
		}
		if work := filepath.Join(dir, "work"); exists(work, "") {
			if err := privateDir(work); err != nil {
				return err
			}
		}
	}
	return nil
}

// privateDir creates dir (and its missing parents) with privateMode, or sets that mode on a directory
// that exists.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, privateMode); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != privateMode || fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
		if err := os.Chmod(dir, privateMode); err != nil {
			return fmt.Errorf("make %s private: %w", dir, err)
		}
	}
	return nil
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) tmpDir() string { return filepath.Join(s.root, "tmp") }

// baseSuffix marks the bottom-layer form of a layer that has whiteouts (they are skipped there).
const baseSuffix = "-base"

// layerDir is where a layer is unpacked with its whiteouts in overlayfs form: a lower dir for any
// position in an image.
func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.root, "layers", "sha256", strings.TrimPrefix(diffID, "sha256:"))
}

// lowerDir returns the directory to use for layer diffID at the bottom of an image (bottom) or above
// it, and whether it exists. A layer without whiteouts has one form for both.
func (s *Store) lowerDir(diffID string, bottom bool) (string, bool) {
	if bottom {
		if d := s.layerDir(diffID) + baseSuffix; exists(d, "") {
			return d, true
		}
		if info, ok := s.layers[diffID]; ok && info.Whiteouts > 0 {
			return s.layerDir(diffID) + baseSuffix, false
		}
	}
	d := s.layerDir(diffID)
	return d, exists(d, "")
}

func (s *Store) clearTmp() error {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return fmt.Errorf("image store: remove debris of an interrupted load: %w", err)
		}
	}
	return nil
}

func (s *Store) readIndex() error {
	p := filepath.Join(s.root, "index.json")
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	var ix index
	if err := json.Unmarshal(data, &ix); err != nil {
		return errf(errdefs.ErrInvalidArgument, "image store index %s is corrupt (%v); move it away to start with an empty store", p, err)
	}
	if ix.Version != indexVersion {
		return errf(errdefs.ErrInvalidArgument, "image store index %s has version %d, this ov reads version %d", p, ix.Version, indexVersion)
	}
	for _, img := range ix.Images {
		s.images[img.ID] = img
	}
	for d, l := range ix.Layers {
		s.layers[d] = l
	}
	return nil
}

// saveLocked writes index.json atomically.
func (s *Store) saveLocked() error {
	ix := index{Version: indexVersion, Layers: s.layers}
	for _, img := range s.images {
		ix.Images = append(ix.Images, img)
	}
	slices.SortFunc(ix.Images, func(a, b *Image) int { return strings.Compare(a.ID, b.ID) })
	data, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.root, "index.json")
	if err := atomicfile.WriteSync(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// collectLocked removes layers no image names and no load has pinned, and forgets layers whose
// directory is missing.
func (s *Store) collectLocked() error {
	used := s.usedLayersLocked()
	dir := filepath.Join(s.root, "layers", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	present := map[string]bool{}
	var doomed []string
	for _, e := range entries {
		id := "sha256:" + strings.TrimSuffix(e.Name(), baseSuffix)
		if used[id] || s.pins[id] > 0 {
			present[id] = true
			continue
		}
		if !slices.Contains(doomed, id) {
			doomed = append(doomed, id)
		}
	}
	changed := false
	for id := range s.layers {
		if !present[id] {
			delete(s.layers, id)
			changed = true
		}
	}
	if changed || len(doomed) > 0 {
		if err := s.saveLocked(); err != nil {
			return err
		}
	}
	for _, id := range doomed {
		if err := s.removeLayerDir(id); err != nil {
			return err
		}
		s.log.Info("removed unused layer", "layer", id)
	}
	for _, img := range s.images {
		for _, l := range img.Layers {
			if !present[l] {
				s.log.Warn("image layer missing; load the image again", "image", img.ID, "layer", l)
			}
		}
	}
	return nil
}

// usedLayersLocked returns the layers some image names.
func (s *Store) usedLayersLocked() map[string]bool {
	used := map[string]bool{}
	for _, img := range s.images {
		for _, l := range img.Layers {
			used[l] = true
		}
	}
	return used
}

// unusedLocked returns the layers of cands (once each) that no image names and no load has pinned.
func (s *Store) unusedLocked(cands []string) []string {
	used := s.usedLayersLocked()
	var out []string
	for _, l := range cands {
		if !used[l] && s.pins[l] == 0 && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// dropUnused deletes the layers of cands that nothing uses: what a failed load unpacked.
func (s *Store) dropUnused(cands []string) {
	s.mu.Lock()
	var gone []string
	for _, l := range s.unusedLocked(cands) {
		delete(s.layers, l)
		g, err := s.detachLayer(l)
		if err != nil {
			s.log.Warn("cannot remove layer of a failed load", "layer", l, "err", err)
		}
		gone = append(gone, g)
	}
	s.mu.Unlock()
	for _, g := range gone {
		if g != "" {
			os.RemoveAll(g)
		}
	}
}

// removeLayerDir moves a layer out of layers/ (atomically) and then deletes it.
func (s *Store) removeLayerDir(diffID string) error {
	gone, err := s.detachLayer(diffID)
	if err != nil {
		return err
	}
	return os.RemoveAll(gone)
}

// detachLayer moves a layer's directory from layers/ into tmp/ and returns where it now is; the caller
// deletes it (possibly without the lock).
func (s *Store) detachLayer(diffID string) (string, error) {
	tmp, err := os.MkdirTemp(s.tmpDir(), "rm-")
	if err != nil {
		return "", fmt.Errorf("remove layer %s: %w", diffID, err)
	}
	for _, d := range []string{s.layerDir(diffID), s.layerDir(diffID) + baseSuffix} {
		if err := os.Rename(d, filepath.Join(tmp, filepath.Base(d))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return tmp, fmt.Errorf("remove layer %s: %w", diffID, err)
		}
	}
	return tmp, nil
}

// List returns every image, sorted by first tag (untagged images last, by ID).
func (s *Store) List(ctx context.Context) ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, img.clone())
	}
	slices.SortFunc(out, func(a, b Image) int {
		switch {
		case len(a.RepoTags) == 0 && len(b.RepoTags) == 0:
			return strings.Compare(a.ID, b.ID)
		case len(a.RepoTags) == 0:
			return 1
		case len(b.RepoTags) == 0:
			return -1
		}
		return strings.Compare(a.RepoTags[0], b.RepoTags[0])
	})
	return out, nil
}

// Get finds an image by reference ("name[:tag]", tag "latest" by default) or by ID or ID prefix
// ("sha256:ab12…" or "ab12…"). An unknown image is errdefs.ErrNotFound; a prefix that matches several
// images is errdefs.ErrInvalidArgument.
func (s *Store) Get(ctx context.Context, ref string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, _, err := s.resolveLocked(ref)
	if err != nil {
		return Image{}, err
	}
	return img.clone(), nil
}

func (img *Image) clone() Image {
	c := *img
	c.RepoTags = slices.Clone(img.RepoTags)
	c.Layers = slices.Clone(img.Layers)
	c.Config.Env = slices.Clone(img.Config.Env)
	c.Config.Entrypoint = slices.Clone(img.Config.Entrypoint)
	c.Config.Cmd = slices.Clone(img.Config.Cmd)
	c.Config.ExposedPorts = slices.Clone(img.Config.ExposedPorts)
	c.Config.Volumes = slices.Clone(img.Config.Volumes)
	if img.Config.Labels != nil {
		c.Config.Labels = make(map[string]string, len(img.Config.Labels))
		for k, v := range img.Config.Labels {
			c.Config.Labels[k] = v
		}
	}
	return c
}

// resolveLocked finds ref; tag is the normalized tag when ref named one, "" when it matched an ID.
func (s *Store) resolveLocked(ref string) (img *Image, tag string, err error) {
	if t, err := NormalizeRef(ref); err == nil {
		for _, img := range s.images {
			if slices.Contains(img.RepoTags, t) {
				return img, t, nil
			}
		}
	}
	hex := strings.TrimPrefix(strings.ToLower(ref), "sha256:")
	if isHex(hex) && len(hex) <= 64 {
		var matches []*Image
		for id, img := range s.images {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), hex) {
				matches = append(matches, img)
			}
		}
		switch len(matches) {
		case 1:
			return matches[0], "", nil
		case 0:
		default:
			return nil, "", errf(errdefs.ErrInvalidArgument, "image ID prefix %q matches %d images; give more digits", ref, len(matches))
		}
	}
	shown := ref
	if t, err := NormalizeRef(ref); err == nil {
		shown = t
	}
	return nil, "", errf(errdefs.ErrNotFound, "image %q not found; load it with ovctl image load (from an image archive) or ovctl image import ROOTFS.tar %s", shown, shown)
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Removed says what Remove did.
type Removed struct {
	// Untagged are the tags removed.
	Untagged []string `json:"untagged,omitempty"`
	// Deleted is the ID of the image deleted, if any (removing one of several tags only untags).
	Deleted string `json:"deleted,omitempty"`
	// Layers are the diff IDs of the layers deleted with it (no other image used them).
	Layers []string `json:"layers,omitempty"`
}

// Remove removes an image like `docker rmi`: by a tag it removes that tag, and the image with its last
// tag; by ID it removes the image and all its tags. Removing an image a container uses (see
// Config.InUse and Prepare) fails with errdefs.ErrConflict. Layers no other image uses are deleted.
func (s *Store) Remove(ctx context.Context, ref string) (Removed, error) {
	s.mu.Lock()
	img, tag, err := s.resolveLocked(ref)
	if err != nil {
		s.mu.Unlock()
		return Removed{}, err
	}
	if tag != "" && len(img.RepoTags) > 1 {
		old := img.RepoTags
		img.RepoTags = slices.DeleteFunc(slices.Clone(old), func(t string) bool { return t == tag })
		err := s.saveLocked()
		if err != nil {
			img.RepoTags = old
		}
		s.mu.Unlock()
		if err != nil {
			return Removed{}, err
		}
		return Removed{Untagged: []string{tag}}, nil
	}
	if users := s.usersLocked(img.ID); len(users) > 0 {
		s.mu.Unlock()
		return Removed{}, errf(errdefs.ErrConflict, "image %q (%s) is in use by %s; remove the container first", ref, shortID(img.ID), strings.Join(users, ", "))
	}
	delete(s.images, img.ID)
	res := Removed{Untagged: slices.Clone(img.RepoTags), Deleted: img.ID}
	res.Layers = s.unusedLocked(img.Layers)
	infos := map[string]layerInfo{}
	for _, l := range res.Layers {
		infos[l] = s.layers[l]
		delete(s.layers, l)
	}
	if err := s.saveLocked(); err != nil {
		s.images[img.ID] = img
		for l, info := range infos {
			s.layers[l] = info
		}
		s.mu.Unlock()
		return Removed{}, err
	}
	// Move the layers out of layers/ under the lock (so a concurrent load unpacks them afresh), and
	// delete them after.
	var errs []error
	var gone []string
	for _, l := range res.Layers {
		g, err := s.detachLayer(l)
		errs = append(errs, err)
		gone = append(gone, g)
	}
	s.mu.Unlock()
	for _, g := range gone {
		if g != "" {
			errs = append(errs, os.RemoveAll(g))
		}
	}
	s.log.Info("removed image", "image", img.ID, "tags", img.RepoTags, "layers", len(res.Layers))
	return res, errors.Join(errs...)
}

// usersLocked names what uses imageID: prepared containers, or "a container" per Config.InUse.
func (s *Store) usersLocked(imageID string) []string {
	var users []string
	for c, id := range s.containers {
		if id == imageID {
			users = append(users, "container "+c)
		}
	}
	slices.Sort(users)
	if len(users) == 0 && s.cfg.InUse != nil && s.cfg.InUse(imageID) {
		users = append(users, "a container")
	}
	return users
}

func shortID(id string) string {
	h := strings.TrimPrefix(id, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}
