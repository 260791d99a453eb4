package agent

import (
	"context"
	"io"

	"github.com/ovnet/ov/internal/image"
)

// ImageStore is the image store the agent runs containers from (*image.Store).
type ImageStore interface {
	Load(ctx context.Context, r io.Reader, opts image.LoadOptions) ([]image.Image, error)
	Import(ctx context.Context, r io.Reader, opts image.ImportOptions) (image.Image, error)
	List(ctx context.Context) ([]image.Image, error)
	Get(ctx context.Context, ref string) (image.Image, error)
	Remove(ctx context.Context, ref string) (image.Removed, error)
	// Prepare mounts a copy-on-write rootfs of image ref for the container and returns its path;
	// Release unmounts and deletes it. Both are idempotent.
	Prepare(ctx context.Context, containerID, ref string) (string, error)
	Release(ctx context.Context, containerID string) error
}

var _ ImageStore = (*image.Store)(nil)
