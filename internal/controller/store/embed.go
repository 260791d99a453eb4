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
	// ClientURL is where the member serves clients: a unix socket, unix:///ABSOLUTE/PATH, made 0600 in
	// a directory made 0700, so that only root (the controller) can reach it. A TCP URL is refused, on
	// loopback too: every local process could read and write the cluster state there. Default
	// unix://DIR/client.sock.
	ClientURL string
	// PeerURL is the member's advertised peer URL. Nobody dials it in a single-member cluster, so the
	// member does not listen on it (a peer listener would take raft messages from anyone who reaches
	// it). Default http://127.0.0.1:7482.
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
		cfg.ClientURL = "unix://" + filepath.Join(cfg.Dir, "client.sock")
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
	cu, sock, err := socketURL(cfg.ClientURL)
	if err != nil {
		return nil, err
	}
	pu, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: peer URL %q: %v: %w", cfg.PeerURL, err, errdefs.ErrInvalidArgument)
	}
	for _, d := range []string{cfg.Dir, filepath.Dir(sock)} {
		if err := privateDir(d); err != nil {
			return nil, err
		}
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{*cu}
	ec.AdvertiseClientUrls = []url.URL{*cu}
	ec.ListenPeerUrls = nil // see PeerURL
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
	if err := os.Chmod(sock, socketMode); err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded etcd: restrict its socket: %w", err)
	}
	cfg.Log.Info("embedded etcd ready", "component", "etcd", "dir", cfg.Dir, "client_url", cfg.ClientURL, "unsafe_no_fsync", cfg.UnsafeNoFsync)
	return &Embedded{e: e, url: cfg.ClientURL}, nil
}

// Permissions of the client socket and of the directories around it (variables so that the attack
// tests can show that they are what protects the store).
var (
	socketMode os.FileMode = 0o600
	dirMode    os.FileMode = 0o700
)

// socketURL checks that a client URL is a unix socket at an absolute path and returns it parsed and
// the path.
func socketURL(s string) (*url.URL, string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "unix" || u.Host != "" || !filepath.IsAbs(u.Path) {
		return nil, "", fmt.Errorf("embedded etcd: client URL %q: the embedded etcd serves clients only on a unix socket, written unix:///absolute/path, that only root can reach; "+
			"a TCP URL (even on loopback) would let every local process read and write the cluster state. Leave --etcd-client-url empty for DATA_DIR/etcd/client.sock, "+
			"or run an etcd cluster with client TLS and give --etcd-endpoints: %w", s, errdefs.ErrInvalidArgument)
	}
	return u, filepath.Clean(u.Path), nil
}

// privateDir creates d, or tightens it if it exists (an older version made it wider), to dirMode.
func privateDir(d string) error {
	if err := os.MkdirAll(d, dirMode); err != nil {
		return fmt.Errorf("embedded etcd: %w", err)
	}
	if err := os.Chmod(d, dirMode); err != nil {
		return fmt.Errorf("embedded etcd: restrict %s: %w", d, err)
	}
	return nil
}

// ClientURL is the URL clients use to reach the member.
func (m *Embedded) ClientURL() string { return m.url }

// Close stops the member and waits until it has stopped.
func (m *Embedded) Close() { m.e.Close() }
