// Command ovcontroller serves ov's cluster API (overlay networks, hosts, endpoint addresses) backed by
// etcd: an embedded single-member etcd in its data directory by default, or an external cluster with
// --etcd-endpoints. Several controllers may run against one etcd.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/ovnet/ov/cmd/internal/daemon"
	"github.com/ovnet/ov/internal/atomicfile"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/store"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ovcontroller:", err)
		os.Exit(1)
	}
}

const defaultConfigFile = "/etc/ov/controller.yaml"

func newRootCmd() *cobra.Command {
	v := viper.New()
	def := controller.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "ovcontroller",
		Short: "ov's cluster API: overlay networks, hosts and addresses, kept in etcd",
		Long: `ovcontroller serves the cluster API (docs/api.md) over HTTP/JSON, HTTPS when --tls-cert and
--tls-key are given. Plain HTTP is served only on a loopback address unless --insecure-listen says so.

State lives in etcd: with no --etcd-endpoints the controller runs an embedded single-member etcd in
DATA_DIR/etcd; with --etcd-endpoints (and --etcd-cert/--etcd-key/--etcd-ca for TLS) it uses that
cluster, and any number of controllers may share it.

Tokens: the admin token (ovctl) and the join token (agents registering) come from OV_ADMIN_TOKEN and
OV_JOIN_TOKEN, or from --admin-token-file and --join-token-file; a missing file is created with a fresh
random token on first start, and its path is logged.

Configuration comes from flags, OV_* environment variables (OV_LISTEN, OV_ETCD_ENDPOINTS, ...) and a
YAML file (--config, default /etc/ov/controller.yaml when it exists; keys as the flag names), in that
order of precedence. SIGTERM or SIGINT shuts down gracefully.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := readConfigFile(v); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return run(ctx, v)
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML configuration file (default "+defaultConfigFile+" when it exists)")
	f.String("data-dir", "/var/lib/ov/controller", "directory for the embedded etcd and generated tokens")
	f.String("listen", "127.0.0.1:7480", "address the API listens on")
	f.String("tls-cert", "", "certificate (PEM) to serve HTTPS with")
	f.String("tls-key", "", "private key (PEM) of --tls-cert")
	f.String("metrics-listen", "", "address to serve Prometheus metrics on at /metrics, apart from the API (e.g. 127.0.0.1:9480; no tokens; docs/metrics.md); empty: no metrics")
	f.Bool("insecure-listen", false, "allow plain HTTP on a non-loopback --listen address (tokens travel in clear text)")
	f.StringSlice("etcd-endpoints", nil, "external etcd client URLs, comma-separated (empty: run an embedded etcd)")
	f.String("etcd-cert", "", "client certificate for an external etcd")
	f.String("etcd-key", "", "client key for an external etcd")
	f.String("etcd-ca", "", "CA bundle that signed the external etcd's server certificates")
	f.String("etcd-client-url", "", "embedded etcd: the unix socket it serves clients on, unix:///PATH, root-only (default DATA_DIR/etcd/client.sock)")
	f.String("etcd-peer-url", "http://127.0.0.1:7482", "embedded etcd: its advertised peer URL (a single member neither dials nor listens on it)")
	f.Bool("etcd-unsafe-no-fsync", false, "embedded etcd: do not fsync (tests and benchmarks only: loses writes on power loss)")
	f.Duration("etcd-timeout", 5*time.Second, "longest wait for one etcd request before answering 503")
	f.String("admin-token-file", "", "file holding the admin token (default DATA_DIR/admin.token)")
	f.String("join-token-file", "", "file holding the first join token (default DATA_DIR/join.token); rewritten when the join token is rotated")
	f.Duration("join-token-ttl", def.JoinTokenTTL, "how long a join token works (the first one, and rotated ones given no --ttl); 0: never expires")
	f.String("subnet-pool", def.Pools.Subnet.String(), "pool that subnets of networks created without --subnet come from")
	f.Int("subnet-size", def.Pools.SubnetBits, "prefix length of subnets carved from the pool")
	f.Uint32("vni-min", def.Pools.VNIMin, "lowest VNI handed out automatically")
	f.Uint32("vni-max", def.Pools.VNIMax, "highest VNI handed out automatically")
	f.Duration("host-dead-after", def.HostDeadAfter, "a host silent for longer is reported dead")
	f.String("log-level", "info", "debug, info, warn or error")
	f.String("log-format", "text", "text or json")
	_ = v.BindPFlags(f)
	cmd.AddCommand(newSnapshotCmd())
	v.SetEnvPrefix("OV")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	return cmd
}

func readConfigFile(v *viper.Viper) error { return daemon.ReadConfigFile(v, defaultConfigFile) }

// token returns the token from env (if set) or from file, creating the file with a fresh token when
// it does not exist.
func token(log *slog.Logger, what, envValue, file string) (string, error) {
	if envValue != "" {
		return strings.TrimSpace(envValue), nil
	}
	b, err := os.ReadFile(file)
	if err == nil {
		t := strings.TrimSpace(string(b))
		if len(t) < 16 {
			return "", fmt.Errorf("%s token in %s is shorter than 16 characters; put a longer one there or delete the file to have one generated", what, file)
		}
		return t, nil
	}
	if !os.IsNotExist(err) {
		return "", fmt.Errorf("read %s token: %w", what, err)
	}
	var r [32]byte
	_, _ = rand.Read(r[:])
	t := hex.EncodeToString(r[:])
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	if err := atomicfile.WriteSync(file, []byte(t+"\n"), 0o600); err != nil { // a token lost to a power cut locks every client out
		return "", fmt.Errorf("write %s token: %w", what, err)
	}
	log.Info("generated a token", "token", what, "path", file)
	return t, nil
}

// run starts the controller from its configuration and serves until ctx ends: configuration, then
// etcd and the store, then the controller, then the HTTP server.
func run(ctx context.Context, v *viper.Viper) error {
	log, err := daemon.NewLogger(v.GetString("log-level"), v.GetString("log-format"))
	if err != nil {
		return err
	}
	if err := checkListen(v); err != nil {
		return err
	}
	cfg, err := controllerConfig(v)
	if err != nil {
		return err
	}
	st, endpoints, closeStore, err := openStore(v, log)
	if err != nil {
		return err
	}
	defer closeStore()
	cfg.Store, cfg.Log = st, log
	var joinFile string
	if cfg.AdminToken, cfg.JoinToken, joinFile, err = tokens(v, log); err != nil {
		return err
	}
	if joinFile != "" {
		cfg.OnJoinToken = func(tok string) { keepJoinFile(log, joinFile, tok) }
	}
	reg := daemon.MetricsRegistry(v.GetString("metrics-listen"))
	if reg != nil {
		cfg.Metrics = reg
	}
	ctl, err := controller.New(cfg)
	if err != nil {
		return err
	}
	mctx, stopMetrics := context.WithCancel(ctx)
	defer stopMetrics()
	if err := daemon.ServeMetrics(mctx, v.GetString("metrics-listen"), reg, log); err != nil {
		return err
	}
	return serve(ctx, v, log, ctl, endpoints)
}

// checkListen refuses TLS settings that do not go together, and plain HTTP on a non-loopback address
// unless --insecure-listen allows it.
func checkListen(v *viper.Viper) error {
	listen := v.GetString("listen")
	certFile, keyFile := v.GetString("tls-cert"), v.GetString("tls-key")
	if (certFile == "") != (keyFile == "") {
		return errors.New("--tls-cert and --tls-key go together; give both or neither")
	}
	if certFile == "" && !v.GetBool("insecure-listen") && !loopback(listen) {
		return fmt.Errorf("--listen %s is not a loopback address and no --tls-cert/--tls-key is given: tokens would travel in clear text; give a certificate, listen on 127.0.0.1, or pass --insecure-listen", listen)
	}
	return nil
}

// controllerConfig is the controller's configuration from the flags, without store, tokens and log.
func controllerConfig(v *viper.Viper) (controller.Config, error) {
	pool, err := netip.ParsePrefix(v.GetString("subnet-pool"))
	if err != nil {
		return controller.Config{}, fmt.Errorf("--subnet-pool %q is not a CIDR", v.GetString("subnet-pool"))
	}
	cfg := controller.DefaultConfig()
	cfg.Pools.Subnet, cfg.Pools.SubnetBits = pool, v.GetInt("subnet-size")
	cfg.Pools.VNIMin, cfg.Pools.VNIMax = v.GetUint32("vni-min"), v.GetUint32("vni-max")
	cfg.HostDeadAfter = v.GetDuration("host-dead-after")
	cfg.JoinTokenTTL = v.GetDuration("join-token-ttl")
	if cfg.JoinTokenTTL < 0 {
		return controller.Config{}, fmt.Errorf("--join-token-ttl %v is negative; give a duration such as 24h, or 0 for a token that never expires", cfg.JoinTokenTTL)
	}
	return cfg, nil
}

// openStore opens the store on the external etcd of --etcd-endpoints, or on an embedded etcd in the
// data directory when none is given. It returns the etcd endpoints and a function that closes both.
func openStore(v *viper.Viper, log *slog.Logger) (*store.Store, []string, func(), error) {
	endpoints := v.GetStringSlice("etcd-endpoints")
	var tlsCfg *tls.Config
	closeEmbedded := func() {}
	if len(endpoints) == 0 {
		emb, err := store.StartEmbedded(store.EmbedConfig{
			Dir:           filepath.Join(v.GetString("data-dir"), "etcd"),
			ClientURL:     v.GetString("etcd-client-url"),
			PeerURL:       v.GetString("etcd-peer-url"),
			UnsafeNoFsync: v.GetBool("etcd-unsafe-no-fsync"),
			Log:           log,
		})
		if err != nil {
			return nil, nil, nil, err
		}
		closeEmbedded = emb.Close
		endpoints = []string{emb.ClientURL()}
	} else if v.GetString("etcd-cert") != "" || v.GetString("etcd-ca") != "" {
		var err error
		if tlsCfg, err = store.ClientTLS(v.GetString("etcd-cert"), v.GetString("etcd-key"), v.GetString("etcd-ca")); err != nil {
			return nil, nil, nil, fmt.Errorf("etcd client TLS (--etcd-cert/--etcd-key/--etcd-ca): %w", err)
		}
	}
	st, err := store.Open(store.Config{Endpoints: endpoints, TLS: tlsCfg, RequestTimeout: v.GetDuration("etcd-timeout"), Log: log})
	if err != nil {
		closeEmbedded()
		return nil, nil, nil, err
	}
	return st, endpoints, func() { st.Close(); closeEmbedded() }, nil
}

// keepJoinFile writes the current join token to its file (when it differs), so that whoever reads the
// file (an operator, the lab) gets the token that works.
func keepJoinFile(log *slog.Logger, file, tok string) {
	if b, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(b)) == tok {
		return
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		log.Warn("could not write the join token file", "path", file, "err", err)
		return
	}
	if err := os.Rename(tmp, file); err != nil {
		log.Warn("could not write the join token file", "path", file, "err", err)
		return
	}
	log.Info("join token file updated", "path", file)
}

// tokens reads (or generates) the admin and join tokens; joinFile is the join token's file, "" when
// OV_JOIN_TOKEN gave it.
func tokens(v *viper.Viper, log *slog.Logger) (admin, join, joinFile string, err error) {
	dataDir := v.GetString("data-dir")
	adminFile := v.GetString("admin-token-file")
	if adminFile == "" {
		adminFile = filepath.Join(dataDir, "admin.token")
	}
	joinFile = v.GetString("join-token-file")
	if joinFile == "" {
		joinFile = filepath.Join(dataDir, "join.token")
	}
	if admin, err = token(log, "admin", os.Getenv("OV_ADMIN_TOKEN"), adminFile); err != nil {
		return "", "", "", err
	}
	if join, err = token(log, "join", os.Getenv("OV_JOIN_TOKEN"), joinFile); err != nil {
		return "", "", "", err
	}
	if os.Getenv("OV_JOIN_TOKEN") != "" {
		joinFile = ""
	}
	return admin, join, joinFile, nil
}

// serve serves the API on --listen and keeps the controller's cache current until ctx ends, then
// shuts down gracefully; it returns early when either fails.
func serve(ctx context.Context, v *viper.Viper, log *slog.Logger, ctl *controller.Controller, endpoints []string) error {
	listen := v.GetString("listen")
	certFile, keyFile := v.GetString("tls-cert"), v.GetString("tls-key")
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	srv := ctl.HTTPServer()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- ctl.Run(runCtx) }()
	serveDone := make(chan error, 1)
	go func() {
		if certFile != "" {
			serveDone <- srv.ServeTLS(ln, certFile, keyFile)
		} else {
			serveDone <- srv.Serve(ln)
		}
	}()
	scheme := "http"
	if certFile != "" {
		scheme = "https"
	}
	log.Info("controller serving", "url", scheme+"://"+ln.Addr().String(), "etcd", strings.Join(endpoints, ","))

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-serveDone:
		cancel()
		<-cacheDone
		return fmt.Errorf("serve: %w", err)
	case err := <-cacheDone:
		_ = srv.Close()
		return fmt.Errorf("cache: %w", err)
	}
	shutdownCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	cancel()
	<-cacheDone
	return nil
}

// loopback reports whether a listen address is on a loopback interface only.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
