package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/testutil"
)

func TestLoopback(t *testing.T) {
	tests := []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:7480", true},
		{"127.0.0.5:7480", true},
		{"[::1]:7480", true},
		{"localhost:7480", true},
		{"0.0.0.0:7480", false},
		{":7480", false},
		{"10.0.0.1:7480", false},
		{"[::]:7480", false},
		{"garbage", false},
	}
	for _, tc := range tests {
		t.Run(tc.listen, func(t *testing.T) {
			if got := loopback(tc.listen); got != tc.want {
				t.Fatalf("loopback(%q) = %v, want %v", tc.listen, got, tc.want)
			}
		})
	}
}

// TestRunEmbedded: with no etcd endpoints the controller starts an embedded etcd in its data
// directory, generates its tokens there, serves the API, and stops cleanly when its context ends.
func TestRunEmbedded(t *testing.T) {
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t))
	cfgFile := filepath.Join(dir, "controller.yaml")
	yaml := fmt.Sprintf("listen: %q\netcd-unsafe-no-fsync: true\nlog-level: warn\n", listen)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newRootCmd()
	cmd.SetArgs([]string{"--config", cfgFile, "--data-dir", dir})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	var admin []byte
	testutil.Eventually(t, 60*time.Second, func() error {
		var err error
		admin, err = os.ReadFile(filepath.Join(dir, "admin.token"))
		return err
	})
	c, err := client.New(client.Config{URL: "http://" + listen, Token: strings.TrimSpace(string(admin))})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, func() error { return c.Health(ctx) })
	n, err := c.CreateNetwork(ctx, api.Network{Name: "n"})
	if err != nil || n.Subnet != "10.128.0.0/24" {
		t.Fatalf("create network: %+v, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "join.token")); err != nil {
		t.Fatalf("no join token generated: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd", "member")); err != nil {
		t.Fatalf("no embedded etcd data in the data directory: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "etcd", "client.sock")); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("embedded etcd's client socket: %v, %v; want a socket with mode 0600", fi, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run ended with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the controller did not stop after its context ended")
	}
}
