package agent

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/dns"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/shim"
)

// The resolver's sockets outlive the agent (docs/dns.md, "Agent restarts"): once a container is
// served, the agent gives copies of its sockets to the container's shim, which keeps them; the next
// agent takes them back and serves them, so that a query sent while no agent runs waits in the
// socket instead of being refused, and is answered.

// socketKeeper is implemented by resolvers whose sockets can be kept across agent restarts
// (*dns.Server).
type socketKeeper interface {
	// Files returns copies of the sockets serving container (the caller closes them).
	Files(container string) ([]*os.File, error)
	// Adopt serves c on sockets of an earlier resolver, after checking they are c's.
	Adopt(ctx context.Context, c dns.Client, files []*os.File) error
}

var _ socketKeeper = (*dns.Server)(nil)

// shimFilesTimeout bounds a hand-over of sockets to or from a shim.
const shimFilesTimeout = 2 * time.Second

// keepSockets gives the shim of container id copies of its resolver's sockets, instead of those it
// kept. A failure is logged: the container is served, only not across an agent restart.
func (a *Agent) keepSockets(ctx context.Context, id string) {
	k, ok := a.cfg.Resolver.(socketKeeper)
	if !ok {
		return
	}
	files, err := k.Files(id)
	if err == nil {
		defer closeAll(files)
		ctx, cancel := context.WithTimeout(ctx, shimFilesTimeout)
		defer cancel()
		err = shim.NewClient(a.shimSocket(id)).KeepFiles(ctx, files)
	}
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) { // not found: a shim from before this API
		a.log.Warn("the shim cannot keep the resolver's sockets: lookups will fail while the agent restarts", "container", api.ShortID(id), "err", err)
	}
}

// reserve serves a container found at start-up: on the sockets its shim kept when it can (the
// queries sent meanwhile are answered), else on new ones (logged).
func (a *Agent) reserve(ctx context.Context, rec api.Container) error {
	c, ok := a.dnsClient(ctx, rec)
	if !ok {
		return nil
	}
	k, ok := a.cfg.Resolver.(socketKeeper)
	if !ok {
		return a.cfg.Resolver.Add(ctx, c)
	}
	sc := shim.NewClient(a.shimSocket(rec.ID))
	tctx, cancel := context.WithTimeout(ctx, shimFilesTimeout)
	defer cancel()
	files, err := sc.TakeFiles(tctx)
	defer closeAll(files)
	if err == nil && len(files) == 0 {
		err = errors.New("the shim keeps none")
	}
	if err == nil {
		if err = k.Adopt(ctx, c, files); err == nil {
			a.log.Debug("serving the resolver's kept sockets", "container", api.ShortID(rec.ID))
			return nil
		}
	}
	a.log.Info("the resolver's sockets kept by the shim cannot be served; opening new ones", "container", api.ShortID(rec.ID), "err", err)
	if len(files) > 0 {
		// Sockets left bound beside new ones (SO_REUSEPORT) would take a share of the queries.
		if err := sc.KeepFiles(tctx, nil); err != nil {
			a.log.Warn("the shim cannot drop the sockets it kept", "container", api.ShortID(rec.ID), "err", err)
		}
	}
	return a.addAndKeep(ctx, c)
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
