package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ovnet/ov/api"
)

// CreateVolume creates a named volume (an empty name: a random one); an existing one is answered.
func (c *Client) CreateVolume(ctx context.Context, req api.VolumeCreate) (api.Volume, error) {
	var out api.Volume
	err := c.do(ctx, http.MethodPost, "/volumes", nil, req, &out)
	return out, err
}

// Volumes lists the agent's volumes.
func (c *Client) Volumes(ctx context.Context) ([]api.Volume, error) {
	var out []api.Volume
	err := c.do(ctx, http.MethodGet, "/volumes", nil, nil, &out)
	return out, err
}

// Volume returns one volume.
func (c *Client) Volume(ctx context.Context, name string) (api.Volume, error) {
	var out api.Volume
	err := c.do(ctx, http.MethodGet, "/volumes/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

// RemoveVolume removes a volume no container uses; force makes a missing one no error.
func (c *Client) RemoveVolume(ctx context.Context, name string, force bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	return c.do(ctx, http.MethodDelete, "/volumes/"+url.PathEscape(name), q, nil, nil)
}
