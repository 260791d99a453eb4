package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ovnet/ov/internal/errdefs"
)

// Config says how to reach etcd.
type Config struct {
	// Endpoints are etcd client URLs, e.g. https://10.0.0.1:2379. Required.
	Endpoints []string
	// TLS is the client TLS configuration for https endpoints; nil for plain http.
	TLS *tls.Config
	// DialTimeout bounds the first connection. Default 5s.
	DialTimeout time.Duration
	// RequestTimeout bounds each etcd request a caller makes without its own deadline, so that an
	// unreachable etcd turns into errdefs.ErrUnavailable instead of a hang. Default 5s.
	RequestTimeout time.Duration
	// Log receives the store's messages. Default slog.Default().
	Log *slog.Logger
}

// DefaultConfig returns a Config with every default filled in and no endpoints.
func DefaultConfig() Config {
	return Config{DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second, Log: slog.Default()}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("store: no etcd endpoints; give --etcd-endpoints or run the embedded etcd: %w", errdefs.ErrInvalidArgument)
	}
	for _, e := range c.Endpoints {
		if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
			return fmt.Errorf("store: etcd endpoint %q: write it as http://host:port or https://host:port: %w", e, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// Store is the cluster state in etcd. It is safe for concurrent use.
type Store struct {
	cfg Config
	cli *clientv3.Client
	log *slog.Logger
}

// Open connects to etcd. It does not wait for etcd to answer: a store opened while etcd is down
// answers ErrUnavailable until etcd comes back, then works without being reopened.
func Open(cfg Config) (*Store, error) {
	d := DefaultConfig()
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = d.DialTimeout
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	if cfg.Log == nil {
		cfg.Log = d.Log
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  cfg.TLS,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		AutoSyncInterval:     time.Minute,
		Logger:               zap.NewNop(),
		MaxCallSendMsgSize:   16 << 20,
		MaxCallRecvMsgSize:   64 << 20,
		PermitWithoutStream:  true,
		RejectOldCluster:     false,
	})
	if err != nil {
		return nil, fmt.Errorf("store: connect to etcd %v: %w", cfg.Endpoints, errors.Join(err, errdefs.ErrUnavailable))
	}
	return &Store{cfg: cfg, cli: cli, log: cfg.Log.With("component", "store")}, nil
}

// Client returns the etcd client (for benchmarks that compare with bare etcd, and health checks).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Close closes the etcd connection.
func (s *Store) Close() error { return s.cli.Close() }

// Health checks that etcd answers a linearizable read.
func (s *Store) Health(ctx context.Context) error {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	_, err := s.cli.Get(ctx, netsetKey)
	return s.wrap("health check", err)
}

// timeout gives ctx the configured request timeout unless it has an earlier deadline.
func (s *Store) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < s.cfg.RequestTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

// wrap turns an etcd client error into an errdefs class: anything that is not the caller's own
// cancellation means etcd could not do it now (ErrUnavailable).
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrGRPCTooManyOps) {
		return fmt.Errorf("%s: %v: %w", op, err, errdefs.ErrInvalidArgument)
	}
	reason := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded), status.Code(err) == codes.DeadlineExceeded:
		reason = "no answer within " + s.cfg.RequestTimeout.String()
	case status.Code(err) == codes.Unavailable:
		reason = "not reachable"
	}
	return fmt.Errorf("%s: etcd %s: %s; the controller retries by itself, check that etcd is running: %w",
		op, strings.Join(s.cfg.Endpoints, ","), reason, errdefs.ErrUnavailable)
}

// Watcher receives a list-then-watch stream. Snapshot replaces everything under the prefix with kvs
// as of rev; Event applies one change; Progress says nothing changed up to rev. A returned error ends
// the watch with that error. Calls come from one goroutine, in revision order.
type Watcher interface {
	Snapshot(kvs []*mvccpb.KeyValue, rev int64) error
	Event(ev *clientv3.Event) error
	Progress(rev int64) error
}

// ListWatch lists prefix and watches it for changes until ctx ends. prevKV asks for the previous
// value with each event (deletes then say what was deleted); it costs etcd a read per event. With fromRev > 0 it resumes: it
// watches from fromRev+1 without a snapshot, and falls back to a fresh snapshot when that revision
// has been compacted. When the watch breaks (etcd restarts, a member dies) it resumes from the last
// revision delivered; it returns only when ctx ends or w returns an error.
func (s *Store) ListWatch(ctx context.Context, prefix string, fromRev int64, prevKV bool, w Watcher) error {
	rev := fromRev
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if rev == 0 {
			lctx, cancel := s.timeout(ctx)
			resp, err := s.cli.Get(lctx, prefix, clientv3.WithPrefix())
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				s.log.Debug("list failed; retrying", "prefix", prefix, "err", err)
				sleep(ctx, &backoff)
				continue
			}
			rev = resp.Header.Revision
			if err := w.Snapshot(resp.Kvs, rev); err != nil {
				return err
			}
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(rev + 1), clientv3.WithProgressNotify()}
		if prevKV {
			opts = append(opts, clientv3.WithPrevKV())
		}
		wch := s.cli.Watch(wctx, prefix, opts...)
		err := func() error {
			for resp := range wch {
				if resp.CompactRevision != 0 {
					s.log.Info("watch history compacted; re-listing", "prefix", prefix, "from", rev+1, "compacted", resp.CompactRevision)
					rev = 0
					return nil
				}
				if err := resp.Err(); err != nil {
					s.log.Debug("watch broke; resuming", "prefix", prefix, "rev", rev, "err", err)
					return nil
				}
				if resp.IsProgressNotify() {
					if resp.Header.Revision > rev {
						rev = resp.Header.Revision
					}
					if err := w.Progress(rev); err != nil {
						return err
					}
					continue
				}
				for _, ev := range resp.Events {
					if err := w.Event(ev); err != nil {
						return err
					}
					rev = ev.Kv.ModRevision
				}
				backoff = 100 * time.Millisecond
			}
			return nil
		}()
		cancel()
		if err != nil {
			return err
		}
		sleep(ctx, &backoff)
	}
	return ctx.Err()
}

func sleep(ctx context.Context, backoff *time.Duration) {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	if *backoff < 2*time.Second {
		*backoff *= 2
	}
}
