package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ovnet/ov/internal/errdefs"
)

// Config says how to reach etcd.
type Config struct {
	// Endpoints are etcd client URLs, e.g. https://10.0.0.1:2379, or unix:///path for the embedded
	// etcd's socket. Required.
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
		return fmt.Errorf("store: no etcd endpoints; give the client URLs of an etcd cluster, or start an embedded etcd and use its URL: %w", errdefs.ErrInvalidArgument)
	}
	for _, e := range c.Endpoints {
		if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") && !strings.HasPrefix(e, "unix:///") {
			return fmt.Errorf("store: etcd endpoint %q: write it as http://host:port, https://host:port or unix:///path/to/socket: %w", e, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// ClientTLS builds a client TLS configuration for https endpoints from PEM files: a client certificate
// and its key (both, or neither when etcd does not ask for client certificates) and the CA bundle that
// signed the etcd servers' certificates (empty: the system's roots). Its errors name the file at fault.
func ClientTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	info := transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: caFile}
	return info.ClientConfig()
}

// Store is the cluster state in etcd. It is safe for concurrent use.
type Store struct {
	cfg Config
	cli *clientv3.Client
	log *slog.Logger
	obs atomic.Pointer[Observer] // SetObserver (observe.go)
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
	s := &Store{cfg: cfg, cli: cli, log: cfg.Log.With("component", "store")}
	cli.KV = observedKV{KV: cli.KV, obs: &s.obs} // every request timed for SetObserver's Observer
	return s, nil
}

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

// list reads every key under prefix, decodes each and sorts them by name; what names the operation in
// errors.
func list[T any](ctx context.Context, s *Store, what, prefix string, decode func(*mvccpb.KeyValue) (T, error), name func(T) string) ([]T, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, s.wrap(what, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v, err := decode(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return name(out[i]) < name(out[j]) })
	return out, nil
}
