package overlay

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
)

// The host watch: one endpoint watch stream to the controller for every overlay network this host
// serves (GET /v1/endpoints?watch=true&networks=...), instead of one stream per network. Each open
// stream costs the controller about 97 KB: 1,000 hosts serving 19 networks each held 19,000 streams
// (1.8 GB); with the host watch they hold 1,000 (docs/scale.md). When the set of networks changes
// (a network's first container, its last one leaving) the stream is opened again, each network
// resuming from its saved revision, after a short pause so that a burst of changes is one reopen.
// Against a controller that does not serve the host watch (older, during an upgrade) the driver
// falls back to a stream per network for the rest of its run, and logs that once.

// hostWatcher is what the driver needs of a controller for the host watch (*client.Client). A
// Controller without it gets a stream per network.
type hostWatcher interface {
	// WatchHost streams the events of the networks of revs (each from its revision) to fn; it
	// returns client.ErrNoHostWatch when the controller does not serve the host watch, and a
	// *client.UnknownNetworkError naming a network that does not exist.
	WatchHost(ctx context.Context, revs map[string]int64, fn func(network string, ev api.EndpointEvent) error) error
}

// hostWatchDebounce is how long the host watch waits after a change of its networks before it opens
// the stream again: the changes that follow within it make one reopen.
const hostWatchDebounce = 75 * time.Millisecond

// hostWatchRetry is how long the host watch waits after its stream failed before it opens it again.
const hostWatchRetry = 2 * time.Second

// usePerNetworkWatches, set by tests, makes the driver open one stream per network as before the
// host watch (tests show with it that they fail without the host watch).
var usePerNetworkWatches = false

// hostWatch is the state of the host watch; under d.mu. Its zero value is ready.
type hostWatch struct {
	want       map[string]bool // the networks the stream should carry
	kick       chan struct{}   // the networks changed: reopen
	ctx        context.Context // the Run the stream's goroutine serves (nil: none runs)
	perNetwork bool            // the controller does not serve the host watch: a stream per network
	opened     int             // streams opened (tests)
}

// kickLocked asks the stream's goroutine to reopen the stream; d.mu is held.
func (w *hostWatch) kickLocked() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// hostWatchAddLocked adds network to the host watch and returns the function that takes it off; both
// run with d.mu held. The stream's goroutine starts with the first network of a Run.
func (d *Driver) hostWatchAddLocked(network string) context.CancelFunc {
	w := &d.hw
	if w.want == nil {
		w.want, w.kick = map[string]bool{}, make(chan struct{}, 1)
	}
	w.want[network] = true
	w.kickLocked()
	if w.ctx != d.runCtx {
		w.ctx = d.runCtx
		d.wg.Add(1)
		go d.runHostWatch(d.runCtx)
	}
	return func() {
		if w.want[network] {
			delete(w.want, network)
			w.kickLocked()
		}
	}
}

// runHostWatch keeps the host watch stream open on the networks wanted until ctx ends, or until the
// controller turns out not to serve it (then every network gets a stream of its own).
func (d *Driver) runHostWatch(ctx context.Context) {
	defer d.wg.Done()
	retry := false
	for {
		wait, after := d.hw.kick, (<-chan time.Time)(nil)
		if retry {
			wait, after = nil, time.After(hostWatchRetry)
		}
		select {
		case <-ctx.Done():
			return
		case <-wait:
		case <-after:
		}
		select { // a burst of changes is one reopen
		case <-ctx.Done():
			return
		case <-time.After(hostWatchDebounce):
		}
		select {
		case <-d.hw.kick:
		default:
		}
		ctl, revs, ok := d.hostWatchRevs(ctx)
		if !ok {
			return
		}
		if ctl == nil || len(revs) == 0 {
			retry = false // nothing to watch (or not joined): wait for the next change
			continue
		}
		retry = d.hostStream(ctx, ctl, revs)
	}
}

// hostWatchRevs returns the controller and the saved revision of each network wanted; false when the
// goroutine must end (its Run ended, or the driver went back to a stream per network).
func (d *Driver) hostWatchRevs(ctx context.Context) (hostWatcher, map[string]int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ctx.Err() != nil || d.hw.perNetwork || d.hw.ctx != ctx {
		return nil, nil, false
	}
	ctl, _ := d.ctl.(hostWatcher)
	revs := make(map[string]int64, len(d.hw.want))
	for name := range d.hw.want {
		if ns, ok := d.st.Networks[name]; ok {
			revs[name] = ns.Revision
		} else {
			revs[name] = 0
		}
	}
	return ctl, revs, true
}

// hostStream runs one host watch stream on revs until it fails or the networks wanted change; it
// reports whether to wait before the next one (it failed).
func (d *Driver) hostStream(ctx context.Context, ctl hostWatcher, revs map[string]int64) (retry bool) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.mu.Lock()
	d.hw.opened++
	kick := d.hw.kick
	d.mu.Unlock()
	changed, watching := make(chan struct{}), make(chan struct{})
	go func() { // a change of the networks ends this stream: the next one carries the new set
		defer close(watching)
		select {
		case <-kick:
			close(changed)
			cancel()
		case <-sctx.Done():
		}
	}()
	err := ctl.WatchHost(sctx, revs, func(network string, ev api.EndpointEvent) error {
		if ev.Type == api.EventRemoved {
			d.hostWatchDrop(network, "the network was removed from the cluster; its endpoint watch stops")
			return nil
		}
		d.apply(network, ev)
		return nil
	})
	cancel()
	<-watching
	var unknown *client.UnknownNetworkError
	select {
	case <-changed:
		d.mu.Lock()
		d.hw.kickLocked() // the goroutine above took the token: give it back to the loop
		d.mu.Unlock()
		return false
	default:
	}
	switch {
	case ctx.Err() != nil:
		return false
	case errors.Is(err, client.ErrNoHostWatch):
		d.hostWatchFallback()
		return false
	case errors.As(err, &unknown):
		d.hostWatchDrop(unknown.Network, "the controller does not know the network (removed?); its endpoint watch stops")
		d.mu.Lock()
		d.hw.kickLocked()
		d.mu.Unlock()
		return false
	case err == nil:
		return false // every network was removed: wait for the next change
	}
	d.log.Warn("endpoint watch ended; restarting", "networks", len(revs), "err", err)
	return true
}

// hostWatchDrop takes a network that no longer exists off the host watch until a container attaches
// to it again (ensureWatchLocked).
func (d *Driver) hostWatchDrop(network, why string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.hw.want[network] {
		return
	}
	delete(d.hw.want, network)
	delete(d.watches, network)
	d.log.Warn(why, "network", network)
}

// hostWatchFallback moves every network of the host watch to a stream of its own: the controller does
// not serve the host watch.
func (d *Driver) hostWatchFallback() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hw.perNetwork {
		return
	}
	d.hw.perNetwork = true
	d.log.Warn("the controller does not serve the host watch stream (it is older than this agent): watching each overlay network on its own stream until the agent restarts")
	names := make([]string, 0, len(d.hw.want))
	for name := range d.hw.want {
		names = append(names, name)
	}
	sort.Strings(names)
	d.hw.want = map[string]bool{}
	for _, name := range names {
		d.watches[name] = d.watchNetworkLocked(name)
	}
}
