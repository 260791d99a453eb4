package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/image"
)

func toAPIImage(img image.Image) api.Image {
	return api.Image{ID: img.ID, Refs: img.RepoTags, Size: img.Size, Created: img.Created}
}

func (a *Agent) images() (ImageStore, error) {
	if a.cfg.Images == nil {
		return nil, fmt.Errorf("this agent has no image store: %w", errdefs.ErrUnavailable)
	}
	return a.cfg.Images, nil
}

// LoadImages loads a docker save or OCI archive read from r.
func (a *Agent) LoadImages(ctx context.Context, r io.Reader, size int64) ([]api.Image, error) {
	st, err := a.images()
	if err != nil {
		return nil, err
	}
	imgs, err := st.Load(ctx, r, image.LoadOptions{Source: "uploaded archive", Size: size})
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, toAPIImage(img))
	}
	return out, nil
}

// ImportImage makes an image of a rootfs tarball read from r, tagged ref.
func (a *Agent) ImportImage(ctx context.Context, r io.Reader, ref string, size int64) (api.Image, error) {
	st, err := a.images()
	if err != nil {
		return api.Image{}, err
	}
	img, err := st.Import(ctx, r, image.ImportOptions{LoadOptions: image.LoadOptions{Source: "uploaded rootfs", Size: size}, Ref: ref})
	if err != nil {
		return api.Image{}, err
	}
	return toAPIImage(img), nil
}

// Images lists the image store.
func (a *Agent) Images(ctx context.Context) ([]api.Image, error) {
	st, err := a.images()
	if err != nil {
		return nil, err
	}
	imgs, err := st.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, toAPIImage(img))
	}
	return out, nil
}

// RemoveImage removes an image (or one of its tags); one a container uses is refused.
func (a *Agent) RemoveImage(ctx context.Context, ref string) (image.Removed, error) {
	st, err := a.images()
	if err != nil {
		return image.Removed{}, err
	}
	// A container removed a moment ago may still hold its rootfs of the image.
	if err := a.waitTeardowns(ctx); err != nil {
		return image.Removed{}, err
	}
	return st.Remove(ctx, ref)
}

func (a *Agent) imageRoutes(mux *http.ServeMux, v string) {
	mux.HandleFunc("GET "+v+"/images", func(w http.ResponseWriter, r *http.Request) {
		imgs, err := a.Images(r.Context())
		reply(w, imgs, err)
	})
	mux.HandleFunc("POST "+v+"/images/load", func(w http.ResponseWriter, r *http.Request) {
		imgs, err := a.LoadImages(r.Context(), r.Body, r.ContentLength)
		reply(w, imgs, err)
	})
	mux.HandleFunc("POST "+v+"/images/import", func(w http.ResponseWriter, r *http.Request) {
		img, err := a.ImportImage(r.Context(), r.Body, r.URL.Query().Get("ref"), r.ContentLength)
		reply(w, img, err)
	})
	mux.HandleFunc("GET "+v+"/images/{ref...}", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.images()
		if err != nil {
			writeError(w, err)
			return
		}
		img, err := st.Get(r.Context(), r.PathValue("ref"))
		reply(w, img, err)
	})
	mux.HandleFunc("DELETE "+v+"/images/{ref...}", func(w http.ResponseWriter, r *http.Request) {
		rm, err := a.RemoveImage(r.Context(), r.PathValue("ref"))
		reply(w, rm, err)
	})
}
