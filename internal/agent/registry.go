package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/image"
)

// ImageRegistry is what the agent needs of an image store to reach registries (*image.Store). The
// credentials come with each request (the agent keeps none).
type ImageRegistry interface {
	Pull(ctx context.Context, ref string, opts image.PullOptions) (image.Image, error)
	Push(ctx context.Context, ref string, opts image.PullOptions) (string, error)
	Tag(ctx context.Context, src, dst string) (image.Image, error)
	Login(ctx context.Context, registry string, auth image.Auth) error
}

var _ ImageRegistry = (*image.Store)(nil)

func (a *Agent) registry() (ImageRegistry, error) {
	st, err := a.images()
	if err != nil {
		return nil, err
	}
	r, ok := st.(ImageRegistry)
	if !ok {
		return nil, fmt.Errorf("this agent's image store cannot reach registries: %w", errdefs.ErrUnavailable)
	}
	return r, nil
}

func toAuth(a *api.RegistryAuth) image.Auth {
	if a == nil {
		return image.Auth{}
	}
	return image.Auth{Username: a.Username, Password: a.Password}
}

// PullImage pulls req.Ref from its registry, telling progress to progress (which must not block).
func (a *Agent) PullImage(ctx context.Context, req api.ImagePull, progress func(image.PullEvent)) (api.Image, error) {
	if err := req.Validate(); err != nil {
		return api.Image{}, err
	}
	r, err := a.registry()
	if err != nil {
		return api.Image{}, err
	}
	img, err := r.Pull(ctx, req.Ref, image.PullOptions{Auth: toAuth(req.Auth), Progress: progress})
	if err != nil {
		return api.Image{}, err
	}
	return toAPIImage(img), nil
}

// registryRoutes serves pull, push (JSON-lines progress), tag and auth.
func (a *Agent) registryRoutes(mux *http.ServeMux, v string) {
	mux.HandleFunc("POST "+v+"/images/pull", func(w http.ResponseWriter, r *http.Request) {
		var req api.ImagePull
		if !decodeBody(w, r, &req) {
			return
		}
		streamEvents(w, func(progress func(image.PullEvent)) (api.ImagePullEvent, error) {
			img, err := a.PullImage(r.Context(), req, progress)
			return api.ImagePullEvent{Image: &img}, err
		})
	})
	mux.HandleFunc("POST "+v+"/images/push", func(w http.ResponseWriter, r *http.Request) {
		var req api.ImagePull
		if !decodeBody(w, r, &req) {
			return
		}
		streamEvents(w, func(progress func(image.PullEvent)) (api.ImagePullEvent, error) {
			reg, err := a.registry()
			if err == nil {
				err = req.Validate()
			}
			if err != nil {
				return api.ImagePullEvent{}, err
			}
			d, err := reg.Push(r.Context(), req.Ref, image.PullOptions{Auth: toAuth(req.Auth), Progress: progress})
			return api.ImagePullEvent{Digest: d}, err
		})
	})
	mux.HandleFunc("POST "+v+"/images/tag", func(w http.ResponseWriter, r *http.Request) {
		var req api.ImageTag
		if !decodeBody(w, r, &req) {
			return
		}
		reg, err := a.registry()
		if err != nil {
			writeError(w, err)
			return
		}
		img, err := reg.Tag(r.Context(), req.Source, req.Target)
		reply(w, toAPIImage(img), err)
	})
	mux.HandleFunc("POST "+v+"/auth", func(w http.ResponseWriter, r *http.Request) {
		var req api.RegistryAuth
		if !decodeBody(w, r, &req) {
			return
		}
		reg, err := a.registry()
		if err == nil {
			err = reg.Login(r.Context(), req.ServerAddress, toAuth(&req))
		}
		reply(w, map[string]string{"status": "Login Succeeded"}, err)
	})
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeError(w, fmt.Errorf("bad request body: %v: %w", err, errdefs.ErrInvalidArgument))
		return false
	}
	return true
}

// streamEvents answers with JSON lines: each event run reports, then the last line (Done, or Error).
func streamEvents(w http.ResponseWriter, run func(progress func(image.PullEvent)) (api.ImagePullEvent, error)) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(ev api.ImagePullEvent) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(ev)
		if flusher != nil {
			flusher.Flush()
		}
	}
	last, err := run(func(e image.PullEvent) {
		send(api.ImagePullEvent{Layer: e.Layer, Status: e.Status, Current: e.Current, Total: e.Total})
	})
	if err != nil {
		send(api.ImagePullEvent{Error: &api.Error{Code: errdefs.Code(err), Message: err.Error()}})
		return
	}
	last.Done = true
	send(last)
}
