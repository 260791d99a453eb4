package image

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ovnet/ov/internal/errdefs"
)

// Tag gives the image src (a reference or ID) the additional tag dst, moving dst from any image that
// had it (docker tag).
func (s *Store) Tag(ctx context.Context, src, dst string) (Image, error) {
	t, err := NormalizeRef(dst)
	if err != nil {
		return Image{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img, _, err := s.resolveLocked(src)
	if err != nil {
		return Image{}, err
	}
	if slices.Contains(img.RepoTags, t) {
		return img.clone(), nil
	}
	var moved *Image
	for _, other := range s.images {
		if i := slices.Index(other.RepoTags, t); i >= 0 {
			other.RepoTags = slices.Delete(other.RepoTags, i, i+1)
			moved = other
		}
	}
	img.RepoTags = append(img.RepoTags, t)
	slices.Sort(img.RepoTags)
	if err := s.saveLocked(); err != nil {
		img.RepoTags = slices.DeleteFunc(img.RepoTags, func(x string) bool { return x == t })
		if moved != nil {
			moved.RepoTags = append(moved.RepoTags, t)
			slices.Sort(moved.RepoTags)
		}
		return Image{}, err
	}
	return img.clone(), nil
}

// Push sends the local image ref ("REGISTRY/NAME[:TAG]") to its registry and returns the manifest's
// digest. The store keeps layers unpacked, so each layer is packed again (deterministically: the same
// layer gives the same blob, which a registry that has it is not sent again) and the image config is
// rebuilt from what the store kept (run config, creation time, platform) with the new layers' diff
// IDs: the pushed image's ID can differ from the local one.
func (s *Store) Push(ctx context.Context, ref string, opts PullOptions) (string, error) {
	local, err := s.Get(ctx, ref)
	if err != nil {
		return "", err
	}
	r, err := s.parseRemote(ref)
	if err != nil {
		return "", err
	}
	reg := r.Context().RegistryStr()
	what := "push " + r.String()
	img, err := s.remoteImage(local)
	if err != nil {
		return "", err
	}
	ropts, err := s.remoteOptions(ctx, reg, opts.Auth)
	if err != nil {
		return "", err
	}
	opts.event(PullEvent{Status: "The push refers to repository [" + r.Context().String() + "]"})
	if err := pushLayers(r.Context(), img, ropts, opts); err != nil {
		return "", s.pushError(reg, what, err)
	}
	if err := remote.Write(r, img, ropts...); err != nil {
		return "", s.pushError(reg, what, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	opts.event(PullEvent{Status: fmt.Sprintf("%s: digest: %s", r.Identifier(), d)})
	return d.String(), nil
}

func (s *Store) pushError(reg, what string, err error) error {
	if errdefs.Code(err) != "internal" {
		return err
	}
	return s.cfg.Registry.wrap(reg, what, err)
}

// pushLayers sends img's layers the repository lacks, one by one, telling progress per layer.
func pushLayers(repo name.Repository, img v1.Image, ropts []remote.Option, opts PullOptions) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("pack layer: %w", err)
		}
		short := shortID(d.String())
		rl, err := remote.Layer(repo.Digest(d.String()), ropts...)
		if err != nil {
			return err
		}
		if ex, ok := rl.(interface{ Exists() (bool, error) }); ok {
			if have, err := ex.Exists(); err != nil {
				return err
			} else if have {
				opts.event(PullEvent{Layer: short, Status: "Layer already exists"})
				continue
			}
		}
		opts.event(PullEvent{Layer: short, Status: "Preparing"})
		updates := make(chan v1.Update, 16)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for u := range updates {
				opts.event(PullEvent{Layer: short, Status: "Pushing", Current: u.Complete, Total: u.Total})
			}
		}()
		err = remote.WriteLayer(repo, l, append(ropts, remote.WithProgress(updates))...)
		<-done
		if err != nil {
			return err
		}
		opts.event(PullEvent{Layer: short, Status: "Pushed"})
	}
	return nil
}

// remoteImage builds the v1.Image Push sends for local.
func (s *Store) remoteImage(local Image) (v1.Image, error) {
	var layers []v1.Layer
	for i, d := range local.Layers {
		s.mu.Lock()
		dir, ok := s.lowerDir(d, i == 0)
		s.mu.Unlock()
		if !ok {
			return nil, errf(errdefs.ErrNotFound, "image %s: layer %s is missing from the store; load or pull the image again", shortID(local.ID), shortID(d))
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(writeLayerTar(dir, pw)) }()
			return pr, nil
		})
		if err != nil {
			return nil, fmt.Errorf("image %s layer %d: %w", shortID(local.ID), i, err)
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	c := local.Config
	cfg := v1.Config{
		Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, User: c.User,
		Labels: c.Labels, StopSignal: c.StopSignal,
	}
	if len(c.ExposedPorts) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range c.ExposedPorts {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	if len(c.Volumes) > 0 {
		cfg.Volumes = map[string]struct{}{}
		for _, v := range c.Volumes {
			cfg.Volumes[v] = struct{}{}
		}
	}
	img, err = mutate.Config(img, cfg)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: local.Created.UTC().Truncate(time.Second)}
	cf.OS, cf.Architecture = local.OS, local.Architecture
	if cf.OS == "" {
		cf.OS = "linux"
	}
	if cf.Architecture == "" {
		_, cf.Architecture, _ = strings.Cut(s.cfg.Platform, "/")
	}
	cf.History = nil
	return mutate.ConfigFile(img, cf)
}
