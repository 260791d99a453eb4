package overlay

import (
	"context"
	"fmt"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// A release is by owner (network, host, container): the controller deletes whatever allocation the
// container holds on the network. A release queued by a failed attach (its allocation's answer lost,
// the release unreachable too) must therefore never reach the controller after a later attach of the
// same container succeeded, or it deletes that attach's allocation: the container keeps an address
// every other host withdrew and the controller may hand out again. A release still queued is dropped
// by the successful attach (dropQueuedRelease); one a heartbeat is already sending is waited for
// before the attach allocates (awaitRelease), so it reaches the controller first.

func releaseKey(network, container string) string { return network + "/" + container }

// sendQueuedReleases sends the releases queued for the heartbeat; those that fail stay queued.
func (d *Driver) sendQueuedReleases(ctx context.Context, ctl Controller) {
	d.mu.Lock()
	pending := d.released
	d.released = nil
	done := make(chan struct{})
	if len(pending) > 0 && d.releasing == nil {
		d.releasing = map[string]chan struct{}{}
	}
	for _, ep := range pending {
		d.releasing[releaseKey(ep.Network, ep.Container)] = done
	}
	d.mu.Unlock()
	defer close(done)
	for _, ep := range pending {
		err := ctl.Release(ctx, ep.Network, ep.Host, ep.Container)
		d.mu.Lock()
		if err != nil {
			d.released = append(d.released, ep)
		}
		if k := releaseKey(ep.Network, ep.Container); d.releasing[k] == done {
			delete(d.releasing, k)
		}
		d.mu.Unlock()
	}
}

// awaitRelease waits until no heartbeat is sending a release of the container on the network.
func (d *Driver) awaitRelease(ctx context.Context, network, container string) error {
	d.mu.Lock()
	done, ok := d.releasing[releaseKey(network, container)]
	d.mu.Unlock()
	if !ok {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("container %s: an earlier release of its address on %q is still on its way to the controller: %w",
			api.ShortID(container), network, errdefs.ErrUnavailable)
	}
}
