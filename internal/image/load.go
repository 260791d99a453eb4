package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ovnet/ov/internal/errdefs"
)

// Progress is told how many bytes of the input were read so far, and the total (-1 when unknown).
// It is called from the loading goroutine, at most about once per MiB and once at the end; it must not
// block.
type Progress func(read, total int64)

// LoadOptions tune Load and Import.
type LoadOptions struct {
	// Source names the input in errors and logs (e.g. the file name). Default "archive".
	Source string
	// Size is the input's length in bytes for Progress; 0 or less when unknown.
	Size int64
	// Progress, if set, is told how far reading the input got.
	Progress Progress
}

// ImportOptions tune Import.
type ImportOptions struct {
	LoadOptions
	// Ref tags the new image ("name[:tag]"); empty leaves it untagged (reachable by ID).
	Ref string
	// Config is the image's run config (docker import's --change); an imported rootfs has none.
	Config RunConfig
}

// LoadFile is Load on the file at path, with its size for progress.
func (s *Store) LoadFile(ctx context.Context, path string, progress Progress) ([]Image, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errf(errdefs.ErrNotFound, "load %s: no such file", path)
		}
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	defer f.Close()
	opts := LoadOptions{Source: path, Size: -1, Progress: progress}
	if st, err := f.Stat(); err == nil {
		opts.Size = st.Size()
	}
	return s.Load(ctx, f, opts)
}

// Load reads a `docker save` archive or an OCI image layout archive (plain or gzip-compressed) and
// adds every image in it, with its tags (a tag another image had moves to the loaded one). Layers
// already in the store are not unpacked again. A malformed or unsupported archive is
// errdefs.ErrInvalidArgument naming the source and the problem. The whole archive is first copied to
// the store's tmp/ directory (so it needs that much free space for the duration of the load).
func (s *Store) Load(ctx context.Context, r io.Reader, opts LoadOptions) ([]Image, error) {
	if opts.Source == "" {
		opts.Source = "archive"
	}
	tmp, err := os.MkdirTemp(s.tmpDir(), "load-")
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", opts.Source, err)
	}
	defer os.RemoveAll(tmp)

	in, err := decompress(progressReader(r, opts))
	if err != nil {
		return nil, errf(errdefs.ErrInvalidArgument, "load %s: %v", opts.Source, err)
	}
	if _, err := unpack(ctx, in, tmp, modeArchive, opts.Source); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, in); err != nil {
		return nil, errf(errdefs.ErrInvalidArgument, "load %s: %v", opts.Source, err)
	}
	var srcs []source
	switch {
	case exists(tmp, "manifest.json"):
		srcs, err = dockerSources(tmp, opts.Source)
	case exists(tmp, "index.json") && exists(tmp, "oci-layout"):
		srcs, err = s.ociSources(tmp, opts.Source)
	default:
		err = errf(errdefs.ErrInvalidArgument, "load %s: neither a docker save archive (no manifest.json) nor an OCI image layout (no index.json and oci-layout)", opts.Source)
	}
	if err != nil {
		return nil, err
	}
	if len(srcs) == 0 {
		return nil, errf(errdefs.ErrInvalidArgument, "load %s: the archive holds no image for %s", opts.Source, s.cfg.Platform)
	}
	var out []Image
	for _, src := range srcs {
		img, err := s.commit(ctx, src, opts.Source)
		if err != nil {
			return out, err
		}
		out = append(out, img)
	}
	return out, nil
}

// Import adds a plain rootfs tarball (plain or gzip-compressed; like `docker import`) as a
// single-layer image. A malformed tarball or a hostile entry is errdefs.ErrInvalidArgument naming it.
func (s *Store) Import(ctx context.Context, r io.Reader, opts ImportOptions) (_ Image, err error) {
	if opts.Source == "" {
		opts.Source = "rootfs tarball"
	}
	var refs []string
	if opts.Ref != "" {
		ref, err := NormalizeRef(opts.Ref)
		if err != nil {
			return Image{}, err
		}
		refs = []string{ref}
	}
	in, err := decompress(progressReader(r, opts.LoadOptions))
	if err != nil {
		return Image{}, errf(errdefs.ErrInvalidArgument, "import %s: %v", opts.Source, err)
	}
	diffID, err := s.unpackLayer(ctx, in, "", true, opts.Source)
	if err != nil {
		return Image{}, err
	}
	defer func() {
		if err != nil {
			s.dropUnused([]string{diffID}) // runs after unpin
		}
	}()
	defer s.unpin([]string{diffID})
	c := opts.Config
	cfg := v1.ConfigFile{
		Created:      v1.Time{Time: time.Now().UTC().Truncate(time.Second)},
		OS:           "linux",
		Architecture: runtime.GOARCH,
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{mustHash(diffID)}},
		Config: v1.Config{
			Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, User: c.User,
			Labels: c.Labels, StopSignal: c.StopSignal,
		},
		History: []v1.History{{Created: v1.Time{Time: time.Now().UTC()}, Comment: "imported from " + opts.Source}},
	}
	if len(c.ExposedPorts) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range c.ExposedPorts {
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
	}
	if len(c.Volumes) > 0 {
		cfg.Config.Volumes = map[string]struct{}{}
		for _, v := range c.Volumes {
			cfg.Config.Volumes[v] = struct{}{}
		}
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return Image{}, err
	}
	return s.commit(ctx, source{refs: refs, config: raw}, opts.Source)
}

// source is one image found in an archive.
type source struct {
	refs   []string // normalized tags
	config []byte   // the raw config; its digest is the image ID
	// layers open the uncompressed layer tars, bottom first; nil when the layers are in the store.
	layers []func() (io.ReadCloser, error)
}

// commit unpacks src's missing layers and records the image.
func (s *Store) commit(ctx context.Context, src source, from string) (_ Image, err error) {
	cfg, err := v1.ParseConfigFile(bytes.NewReader(src.config))
	if err != nil {
		return Image{}, errf(errdefs.ErrInvalidArgument, "%s: image config: %v", from, err)
	}
	sum := sha256.Sum256(src.config)
	id := "sha256:" + hex.EncodeToString(sum[:])
	if cfg.OS != "" && cfg.OS != "linux" {
		return Image{}, errf(errdefs.ErrInvalidArgument, "%s: image %s is for %s; ov runs linux images", from, shortID(id), cfg.OS)
	}
	var diffIDs []string
	for _, h := range cfg.RootFS.DiffIDs {
		if h.Algorithm != "sha256" || len(h.Hex) != 64 || !isHex(h.Hex) {
			return Image{}, errf(errdefs.ErrInvalidArgument, "%s: image %s: unsupported layer diff ID %q", from, shortID(id), h)
		}
		diffIDs = append(diffIDs, h.String())
	}
	if src.layers != nil && len(src.layers) != len(diffIDs) {
		return Image{}, errf(errdefs.ErrInvalidArgument, "%s: image %s has %d layers but its config names %d", from, shortID(id), len(src.layers), len(diffIDs))
	}
	missing := s.pin(diffIDs)
	defer func() {
		if err != nil {
			s.dropUnused(diffIDs) // runs after unpin
		}
	}()
	defer s.unpin(diffIDs)
	unpacked := 0
	for i, d := range diffIDs {
		if !missing[i] {
			continue
		}
		if src.layers == nil {
			return Image{}, errf(errdefs.ErrNotFound, "%s: layer %s is not in the store", from, d)
		}
		rc, err := src.layers[i]()
		if err != nil {
			return Image{}, errf(errdefs.ErrInvalidArgument, "%s: image %s layer %d: %v", from, shortID(id), i, err)
		}
		_, err = s.unpackLayer(ctx, rc, d, i == 0, fmt.Sprintf("%s layer %d (%s)", from, i, shortID(d)))
		rc.Close()
		if err != nil {
			return Image{}, err
		}
		s.log.Debug("unpacked layer", "layer", d, "from", from)
		unpacked++
	}
	if unpacked > 0 || src.layers == nil {
		// The index must never name a layer whose files a power loss could still empty.
		if err := syncFS(s.root); err != nil {
			return Image{}, fmt.Errorf("%s: sync unpacked layers: %w", from, err)
		}
	}

	img := &Image{
		ID: id, RepoTags: src.refs, Layers: diffIDs, Created: cfg.Created.Time,
		OS: cfg.OS, Architecture: cfg.Architecture, Config: runConfig(cfg.Config),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range diffIDs {
		img.Size += s.layers[d].Size
	}
	if old, ok := s.images[id]; ok {
		img.RepoTags = append(img.RepoTags, old.RepoTags...)
	}
	for _, other := range s.images {
		if other.ID != id {
			other.RepoTags = slices.DeleteFunc(other.RepoTags, func(t string) bool { return slices.Contains(src.refs, t) })
		}
	}
	slices.Sort(img.RepoTags)
	img.RepoTags = slices.Compact(img.RepoTags)
	s.images[id] = img
	if err := s.saveLocked(); err != nil {
		return Image{}, err
	}
	s.log.Info("loaded image", "image", id, "tags", img.RepoTags, "from", from)
	return img.clone(), nil
}

// pin marks diffIDs (an image's layers, bottom first) as used by a load in progress (so Remove
// leaves them) and reports which positions lack their layer, in the form that position needs.
func (s *Store) pin(diffIDs []string) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	missing := make([]bool, len(diffIDs))
	for i, d := range diffIDs {
		s.pins[d]++
		_, ok := s.lowerDir(d, i == 0)
		missing[i] = !ok
	}
	return missing
}

func (s *Store) unpin(diffIDs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range diffIDs {
		if s.pins[d]--; s.pins[d] <= 0 {
			delete(s.pins, d)
		}
	}
}

// unpackLayer unpacks the uncompressed layer tar r into a temporary directory, checks its digest
// against want (when given) and renames it into layers/. It returns the diff ID. When want is empty
// (import), the layer is pinned and the caller unpins it. A bottom layer's whiteouts are skipped;
// when it has any, it is kept apart from the form other positions use (see lowerDir).
func (s *Store) unpackLayer(ctx context.Context, r io.Reader, want string, bottom bool, what string) (string, error) {
	tmp, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return "", fmt.Errorf("unpack %s: %w", what, err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "layer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("unpack %s: %w", what, err)
	}
	h := sha256.New()
	tee := io.TeeReader(r, h)
	mode := modeLayer
	if bottom {
		mode = modeBaseLayer
	}
	stats, err := unpack(ctx, tee, dir, mode, what)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // the tar's trailing blocks count too
		return "", errf(errdefs.ErrInvalidArgument, "%s: %v", what, err)
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return "", errf(errdefs.ErrInvalidArgument, "%s: content has digest %s but the image config says %s; the archive is corrupt", what, got, want)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.layerDir(got)
	if bottom && stats.whiteouts > 0 {
		target += baseSuffix
	}
	if err := os.Rename(dir, target); err != nil {
		if !exists(target, "") {
			return "", fmt.Errorf("unpack %s: %w", what, err)
		}
		// Another load unpacked the same layer first; keep its copy.
	}
	if want == "" {
		s.pins[got]++
	}
	s.layers[got] = layerInfo{Size: stats.size, Whiteouts: stats.whiteouts}
	return got, nil
}

func runConfig(c v1.Config) RunConfig {
	rc := RunConfig{
		Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, User: c.User,
		Labels: c.Labels, StopSignal: c.StopSignal,
	}
	for p := range c.ExposedPorts {
		rc.ExposedPorts = append(rc.ExposedPorts, p)
	}
	slices.Sort(rc.ExposedPorts)
	for v := range c.Volumes {
		rc.Volumes = append(rc.Volumes, v)
	}
	slices.Sort(rc.Volumes)
	return rc
}

func mustHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(err) // only called with digests this package computed
	}
	return h
}

// dockerSources reads the images of an unpacked `docker save` archive (manifest.json).
func dockerSources(dir, from string) ([]source, error) {
	data, err := readMember(dir, "manifest.json")
	if err != nil {
		return nil, errf(errdefs.ErrInvalidArgument, "load %s: manifest.json: %v", from, err)
	}
	var m tarball.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, errf(errdefs.ErrInvalidArgument, "load %s: manifest.json is not a docker save manifest: %v", from, err)
	}
	var out []source
	for i, d := range m {
		cfg, err := readMember(dir, d.Config)
		if err != nil {
			return nil, errf(errdefs.ErrInvalidArgument, "load %s: image %d config %q: %v", from, i, d.Config, err)
		}
		src := source{config: cfg, layers: []func() (io.ReadCloser, error){}}
		for _, t := range d.RepoTags {
			ref, err := NormalizeRef(t)
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", from, err)
			}
			src.refs = append(src.refs, ref)
		}
		for _, l := range d.Layers {
			l := l
			src.layers = append(src.layers, func() (io.ReadCloser, error) {
				layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return openMember(dir, l) })
				if err != nil {
					return nil, fmt.Errorf("%q: %w", l, err)
				}
				return layer.Uncompressed()
			})
		}
		out = append(out, src)
	}
	return out, nil
}

// ociSources reads the images of an unpacked OCI image layout, choosing the store's platform from
// multi-platform indexes.
func (s *Store) ociSources(dir, from string) ([]source, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, errf(errdefs.ErrInvalidArgument, "load %s: OCI layout: %v", from, err)
	}
	var out []source
	if err := s.walkIndex(idx, nil, &out, 0); err != nil {
		return nil, errf(errdefs.ErrInvalidArgument, "load %s: OCI layout: %v", from, err)
	}
	return out, nil
}

// walkIndex adds the images idx names to out. Names come from each descriptor's annotations
// (io.containerd.image.name, or org.opencontainers.image.ref.name when it is a full reference), else
// from the enclosing index's descriptor (refs).
func (s *Store) walkIndex(idx v1.ImageIndex, refs []string, out *[]source, depth int) error {
	if depth > 4 {
		return errors.New("indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	nested := depth > 0
	for _, d := range im.Manifests {
		names := refs
		if n := descriptorRef(d); n != "" {
			ref, err := NormalizeRef(n)
			if err != nil {
				return err
			}
			names = []string{ref}
		}
		switch d.MediaType {
		case types.OCIImageIndex, types.DockerManifestList:
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return err
			}
			if err := s.walkIndex(child, names, out, depth+1); err != nil {
				return err
			}
		case types.OCIManifestSchema1, types.DockerManifestSchema2:
			if nested && d.Platform != nil && !s.platformMatches(d.Platform) {
				continue
			}
			img, err := idx.Image(d.Digest)
			if err != nil {
				return err
			}
			if err := addImage(img, names, out); err != nil {
				return fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			if nested {
				return nil // the first match of a multi-platform index
			}
		}
	}
	return nil
}

func (s *Store) platformMatches(p *v1.Platform) bool {
	os, arch, _ := strings.Cut(s.cfg.Platform, "/")
	arch, variant, _ := strings.Cut(arch, "/")
	return p.OS == os && p.Architecture == arch && (variant == "" || p.Variant == variant)
}

func descriptorRef(d v1.Descriptor) string {
	if n := d.Annotations["io.containerd.image.name"]; n != "" {
		return n
	}
	if n := d.Annotations["org.opencontainers.image.ref.name"]; strings.ContainsAny(n, ":/") {
		return n
	}
	return ""
}

// addImage appends img to out, merging names when the same image appears twice.
func addImage(img v1.Image, names []string, out *[]source) error {
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	for i := range *out {
		if bytes.Equal((*out)[i].config, cfg) {
			(*out)[i].refs = append((*out)[i].refs, names...)
			return nil
		}
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	src := source{refs: slices.Clone(names), config: cfg, layers: []func() (io.ReadCloser, error){}}
	for _, l := range layers {
		src.layers = append(src.layers, l.Uncompressed)
	}
	*out = append(*out, src)
	return nil
}

func exists(dir, name string) bool {
	_, err := os.Lstat(filepath.Join(dir, name))
	return err == nil
}

func readMember(dir, name string) ([]byte, error) {
	f, err := openMember(dir, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 64<<20))
}

// decompress returns r, gunzipped when it starts with the gzip magic.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return gzip.NewReader(br)
	}
	return br, nil
}

// progressReader reports reads of r to opts.Progress.
func progressReader(r io.Reader, opts LoadOptions) io.Reader {
	if opts.Progress == nil {
		return r
	}
	total := opts.Size
	if total <= 0 {
		total = -1
	}
	return &counter{r: r, total: total, fn: opts.Progress}
}

type counter struct {
	r       io.Reader
	n, last int64
	total   int64
	fn      Progress
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.last >= 1<<20 || (err != nil && c.n != c.last) {
		c.last = c.n
		c.fn(c.n, c.total)
	}
	return n, err
}
