package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ovnet/ov/internal/errdefs"
)

// PullEvent is one step of a pull or push, for a progress display. Layer events name the layer by
// its short digest; image events have no Layer.
type PullEvent struct {
	Layer string `json:"layer,omitempty"`
	// Status is docker's wording: "Pulling fs layer", "Already exists", "Downloading", "Download
	// complete", "Pull complete"; "Preparing", "Layer already exists", "Pushing", "Pushed"; or, for the
	// image, "Pulling from REPO", "Digest: sha256:…", "Status: …".
	Status  string `json:"status"`
	Current int64  `json:"current,omitempty"`
	Total   int64  `json:"total,omitempty"`
}

// PullOptions tune Pull and Push.
type PullOptions struct {
	// Auth is given to the registry; zero is anonymous.
	Auth Auth
	// Progress, if set, is told each step. It is called from the pulling goroutine and must not block.
	Progress func(PullEvent)
}

func (o PullOptions) event(ev PullEvent) {
	if o.Progress != nil {
		o.Progress(ev)
	}
}

// Pull fetches image ref ("[REGISTRY/]NAME[:TAG]" or "NAME@sha256:…") from its registry and adds it
// to the store under its normalized tag. From a multi-platform index it takes the store's platform.
// Layers the store has (by diff ID) are not fetched again. Every blob is checked against its digest
// (the compressed blob against the manifest, the unpacked content against the config's diff ID) and
// unpacked through the same path as Load, with the same protections. An unknown image is
// errdefs.ErrNotFound, refused credentials errdefs.ErrUnauthorized.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (Image, error) {
	r, err := s.parseRemote(ref)
	if err != nil {
		return Image{}, err
	}
	var refs []string
	if _, ok := r.(name.Tag); ok {
		t, err := NormalizeRef(ref)
		if err != nil {
			return Image{}, err
		}
		refs = []string{t}
	}
	reg := r.Context().RegistryStr()
	what := "pull " + r.String()
	ropts, err := s.remoteOptions(ctx, reg, opts.Auth)
	if err != nil {
		return Image{}, err
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return Image{}, s.cfg.Registry.wrap(reg, what, err)
	}
	img, err := s.platformImage(desc, what)
	if err != nil {
		return Image{}, err
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return Image{}, s.cfg.Registry.wrap(reg, what+": image config", err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return Image{}, errf(errdefs.ErrInvalidArgument, "%s: image config: %v", what, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return Image{}, s.cfg.Registry.wrap(reg, what+": manifest", err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return Image{}, errf(errdefs.ErrInvalidArgument, "%s: the manifest has %d layers but the config names %d; the image is corrupt", what, len(layers), len(cfg.RootFS.DiffIDs))
	}
	opts.event(PullEvent{Status: r.Identifier() + ": Pulling from " + r.Context().RepositoryStr()})
	src := source{refs: refs, config: rawCfg}
	var fetched atomic.Int32
	for i, l := range layers {
		short := layerShort(l)
		if s.hasLayer(cfg.RootFS.DiffIDs[i].String(), i == 0) {
			opts.event(PullEvent{Layer: short, Status: "Already exists"})
		} else {
			opts.event(PullEvent{Layer: short, Status: "Pulling fs layer"})
		}
		src.layers = append(src.layers, func() (io.ReadCloser, error) {
			fetched.Add(1)
			return openRemoteLayer(l, short, opts)
		})
	}
	out, err := s.commit(ctx, src, what)
	if err != nil {
		if errdefs.Code(err) == "internal" {
			return Image{}, s.cfg.Registry.wrap(reg, what, err)
		}
		return Image{}, err
	}
	d, _ := img.Digest()
	opts.event(PullEvent{Status: "Digest: " + d.String()})
	if fetched.Load() > 0 {
		opts.event(PullEvent{Status: "Status: Downloaded newer image for " + r.String()})
	} else {
		opts.event(PullEvent{Status: "Status: Image is up to date for " + r.String()})
	}
	return out, nil
}

// platformImage returns the image desc names, or from an index the one for the store's platform.
func (s *Store) platformImage(desc *remote.Descriptor, what string) (v1.Image, error) {
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, errf(errdefs.ErrInvalidArgument, "%s: index: %v", what, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, errf(errdefs.ErrInvalidArgument, "%s: index: %v", what, err)
		}
		var have []string
		for _, m := range im.Manifests {
			if m.Platform == nil || !m.MediaType.IsImage() {
				continue
			}
			if s.platformMatches(m.Platform) {
				return idx.Image(m.Digest)
			}
			have = append(have, m.Platform.String())
		}
		return nil, errf(errdefs.ErrNotFound, "%s: no image for %s in the index (it has %s)", what, s.cfg.Platform, strings.Join(have, ", "))
	case desc.MediaType == types.DockerManifestSchema1 || desc.MediaType == types.DockerManifestSchema1Signed:
		return nil, errf(errdefs.ErrInvalidArgument, "%s: docker schema 1 manifests are not supported; push the image again with a current docker", what)
	}
	return desc.Image()
}

func layerShort(l v1.Layer) string {
	d, err := l.Digest()
	if err != nil {
		return "?"
	}
	return shortID(d.String())
}

// hasLayer reports whether the store has layer diffID in the form position bottom needs.
func (s *Store) hasLayer(diffID string, bottom bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.lowerDir(diffID, bottom)
	return ok
}

// verifyError is a blob whose content does not match its digest.
type verifyError struct{ msg string }

func (e *verifyError) Error() string { return e.msg }
func (e *verifyError) Unwrap() error { return errdefs.ErrInvalidArgument }

// openRemoteLayer opens layer l's uncompressed content. The compressed blob is hashed as it is read:
// when the uncompressed stream ends, the rest of the blob is read and its digest compared with the
// manifest's; a mismatch is the stream's error instead of io.EOF (so nothing is committed).
func openRemoteLayer(l v1.Layer, short string, opts PullOptions) (io.ReadCloser, error) {
	want, err := l.Digest()
	if err != nil {
		return nil, err
	}
	mt, err := l.MediaType()
	if err == nil && strings.Contains(string(mt), "zstd") {
		return nil, errf(errdefs.ErrInvalidArgument, "layer %s is zstd-compressed; ov pulls gzip or uncompressed layers", short)
	}
	size, _ := l.Size()
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	c := &blobReader{rc: rc, h: sha256.New(), want: want.String(), total: size, short: short, opts: opts}
	in, err := decompress(c)
	if err != nil {
		rc.Close()
		return nil, &verifyError{fmt.Sprintf("layer %s: %v", short, err)}
	}
	return &layerReader{r: in, c: c}, nil
}

// blobReader hashes and counts a compressed blob and reports download progress.
type blobReader struct {
	rc          io.ReadCloser
	h           hash.Hash
	want, short string
	n, total    int64
	last        time.Time
	opts        PullOptions
}

func (b *blobReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && strings.Contains(err.Error(), "error verifying") {
		err = &verifyError{fmt.Sprintf("the registry sent a blob for layer %s that does not match its digest %s (%v); the registry's copy is corrupt or was tampered with", b.short, b.want, err)}
	}
	b.h.Write(p[:n])
	b.n += int64(n)
	if now := time.Now(); now.Sub(b.last) >= 100*time.Millisecond {
		b.last = now
		b.opts.event(PullEvent{Layer: b.short, Status: "Downloading", Current: b.n, Total: b.total})
	}
	return n, err
}

// verify reads the rest of the blob and compares its digest.
func (b *blobReader) verify() error {
	if _, err := io.Copy(io.Discard, b); err != nil {
		return &verifyError{fmt.Sprintf("layer %s: %v", b.short, err)}
	}
	got := "sha256:" + hex.EncodeToString(b.h.Sum(nil))
	if got != b.want {
		return &verifyError{fmt.Sprintf("layer %s: the registry sent a blob with digest %s, the manifest says %s; the registry's copy is corrupt or was tampered with", b.short, got, b.want)}
	}
	b.opts.event(PullEvent{Layer: b.short, Status: "Download complete", Current: b.n, Total: b.total})
	return nil
}

// layerReader is a layer's uncompressed stream whose end is its blob's verification.
type layerReader struct {
	r    io.Reader
	c    *blobReader
	done bool
}

func (l *layerReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if errors.Is(err, io.EOF) && !l.done {
		l.done = true
		if verr := l.c.verify(); verr != nil {
			return n, verr
		}
		l.c.opts.event(PullEvent{Layer: l.c.short, Status: "Pull complete"})
	}
	return n, err
}

func (l *layerReader) Close() error { return l.c.rc.Close() }
