package store

import (
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/ovnet/ov/internal/errdefs"
)

// EmbedConfig configures the embedded single-member etcd a controller runs when it is given no etcd
// endpoints.
type EmbedConfig struct {
	// Dir holds etcd's data (write-ahead log and database). Required.
	Dir string
	// Name of the member. Default "ovcontroller".
	Name string
	// ClientURL is where the member serves clients. Default http://127.0.0.1:7481 (a port of its own so
	// that it does not clash with a system etcd on 2379).
	ClientURL string
	// PeerURL is the member's peer URL; nobody dials it in a single-member cluster. Default
	// http://127.0.0.1:7482.
	PeerURL string
	// UnsafeNoFsync skips fsync of the write-ahead log: much faster, loses the last writes on power
	// loss. For benchmarks and tests only. Default false.
	UnsafeNoFsync bool
	// StartTimeout bounds the start. Default 60s.
	StartTimeout time.Duration
	// Log receives start and stop messages. Default slog.Default().
	Log *slog.Logger
}

// Embedded is a running embedded etcd member.
type Embedded struct {
	e   *embed.Etcd
	url string
}

// StartEmbedded starts a single-member etcd in cfg.Dir and waits until it serves clients.
func StartEmbedded(cfg EmbedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("embedded etcd: no data directory: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.Name == "" {
		cfg.Name = "ovcontroller"
	}
	if cfg.ClientURL == "" {
		cfg.ClientURL = "http://127.0.0.1:7481"
	}
	if cfg.PeerURL == "" {
		cfg.PeerURL = "http://127.0.0.1:7482"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cu, err := url.Parse(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: client URL %q: %v: %w", cfg.ClientURL, err, errdefs.ErrInvalidArgument)
	}
	pu, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: peer URL %q: %v: %w", cfg.PeerURL, err, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{*cu}
	ec.AdvertiseClientUrls = []url.URL{*cu}
	ec.ListenPeerUrls = []url.URL{*pu}
	ec.AdvertisePeerUrls = []url.URL{*pu}
	ec.InitialCluster = cfg.Name + "=" + pu.String()
	ec.InitialClusterToken = "ov-" + filepath.Base(cfg.Dir)
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	// Keep 1h of history for watchers that resume; compaction beyond that makes them re-list.
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "1h"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s (client %s): %v; is another etcd using the port or the directory?: %w", cfg.Dir, cfg.ClientURL, err, errdefs.ErrUnavailable)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %v: %w", cfg.Dir, err, errdefs.ErrUnavailable)
	case <-time.After(cfg.StartTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s did not become ready within %v: %w", cfg.Dir, cfg.StartTimeout, errdefs.ErrUnavailable)
	}
	cfg.Log.Info("embedded etcd ready", "component", "etcd", "dir", cfg.Dir, "client_url", cfg.ClientURL, "unsafe_no_fsync", cfg.UnsafeNoFsync)
	return &Embedded{e: e, url: cfg.ClientURL}, nil
}

// ClientURL is the URL clients use to reach the member.
func (m *Embedded) ClientURL() string { return m.url }

// Close stops the member and waits until it has stopped.
func (m *Embedded) Close() { m.e.Close() }
