package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/controller/store/storetest"
	"github.com/ovnet/ov/internal/testutil"
)

// realServer serves a controller with the server ovcontroller runs (its timeouts and limits) on a
// loopback port, and waits until the controller is ready.
func realServer(t *testing.T) (*store.Embedded, string) {
	t.Helper()
	e := storetest.Embedded(t, true)
	st, err := store.Open(store.Config{Endpoints: []string{e.ClientURL()}, Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := controller.DefaultConfig()
	cfg.Store, cfg.AdminToken, cfg.JoinToken, cfg.Log = st, adminToken, joinToken, testLog()
	if os.Getenv("OV_ATTACK_WEAKEN") == "http" {
		t.Log("OV_ATTACK_WEAKEN=http: no watch cap, no forgery check; this test must fail")
		cfg.MaxWatchesPerToken = 1 << 30
		t.Cleanup(controller.SkipForgeryCheck())
	}
	c, err := controller.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = c.HTTPServer()
	if os.Getenv("OV_ATTACK_WEAKEN") == "http" {
		hs.Config.ReadHeaderTimeout, hs.Config.ReadTimeout, hs.Config.IdleTimeout = 0, 0, 0
	}
	hs.Start()
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		cancel()
		<-done
		st.Close()
	})
	testutil.Eventually(t, 30*time.Second, func() error {
		if !c.Ready() {
			return fmt.Errorf("controller not ready")
		}
		return nil
	})
	return e, hs.URL
}

// latencies times n sequential admin reads and returns them sorted.
func latencies(t *testing.T, url string, n int) []time.Duration {
	t.Helper()
	cl := newClient(t, url, adminToken)
	out := make([]time.Duration, n)
	for i := range out {
		start := time.Now()
		if _, err := cl.GetHost(context.Background(), "h1"); err != nil {
			t.Fatalf("admin read: %v", err)
		}
		out[i] = time.Since(start)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// TestAttackControllerHTTP: one token holding 200 watches and 1,000 idle connections does not slow
// the controller for others (and gets a clear 429 past its watch cap); idle connections are closed by
// the server; 10,000 requests with invalid tokens (forged host tokens included) cause no etcd read;
// a 503 to an unauthenticated client names no internal endpoint. OV_ATTACK_WEAKEN=http runs it
// without the watch cap, the forgery check and the server's timeouts, to show that it then fails.
func TestAttackControllerHTTP(t *testing.T) {
	e, url := realServer(t)
	ctx := context.Background()
	admin := newClient(t, url, adminToken)
	h, err := newClient(t, url, joinToken).RegisterHost(ctx, api.Host{Name: "h1", Address: "192.168.63.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateNetwork(ctx, api.Network{Name: "n", Subnet: "10.63.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	base := latencies(t, url, 50)
	t.Logf("baseline: median %v, max %v", base[25], base[49])

	// 1,000 idle connections that never send a request.
	addr := strings.TrimPrefix(url, "http://")
	idle := make([]net.Conn, 0, 1000)
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 1000; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		idle = append(idle, c)
	}
	// 200 watches with one host token, each on its own connection.
	var ok, refused atomic.Int32
	var msg atomic.Value
	var wg sync.WaitGroup
	bodies := make(chan io.Closer, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, url+"/v1/networks/n/endpoints?watch=1", nil)
			req.Header.Set("Authorization", "Bearer "+h.Token)
			resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
			if err != nil {
				t.Errorf("watch: %v", err)
				return
			}
			switch resp.StatusCode {
			case http.StatusOK:
				ok.Add(1)
				bodies <- resp.Body
			case http.StatusTooManyRequests:
				var e api.Error
				_ = json.NewDecoder(resp.Body).Decode(&e)
				msg.Store(e.Message)
				refused.Add(1)
				resp.Body.Close()
			default:
				t.Errorf("watch: %s", resp.Status)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(bodies)
	defer func() {
		for b := range bodies {
			b.Close()
		}
	}()
	if ok.Load() != 64 || refused.Load() != 136 {
		t.Errorf("200 watches from one token: %d open, %d refused; want 64 open (the cap) and 136 refused with 429", ok.Load(), refused.Load())
	}
	if m, _ := msg.Load().(string); refused.Load() > 0 && !strings.Contains(m, "already holds 64 watch streams") {
		t.Errorf("429 message %q does not say what the limit is", m)
	}
	under := latencies(t, url, 50)
	t.Logf("under attack: median %v, max %v", under[25], under[49])
	if under[25] > 10*base[25]+20*time.Millisecond || under[49] > time.Second {
		t.Errorf("under attack the controller answers in median %v, max %v; baseline median %v", under[25], under[49], base[25])
	}

	// 10,000 requests with invalid tokens: not one etcd read.
	before := storetest.RangeCount(t, e)
	tokens := []string{
		"ovh.h1." + strings.Repeat("ab", 24) + "." + strings.Repeat("cd", 16), // forged signed token
		"ovh.h1." + strings.Repeat("ef", 24),                                  // forged old-style token
		"ovh.nosuchhost.0123.4567", "not-a-token-at-all", joinToken + "x", adminToken[:10],
	}
	var unexpected atomic.Int32
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	jobs := make(chan int)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				req, _ := http.NewRequest(http.MethodGet, url+"/v1/hosts/h1", nil)
				req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
				resp, err := tr.RoundTrip(req)
				if err != nil || resp.StatusCode != http.StatusUnauthorized {
					unexpected.Add(1)
				}
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	for i := 0; i < 10000; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if n := unexpected.Load(); n > 0 {
		t.Errorf("%d of 10,000 requests with invalid tokens were not answered 401", n)
	}
	if reads := storetest.RangeCount(t, e) - before; reads != 0 {
		t.Errorf("10,000 requests with invalid tokens caused %v etcd reads; want none", reads)
	}

	// The server closes connections that send nothing (ReadHeaderTimeout, 10 s).
	deadline := time.Now().Add(15 * time.Second)
	for i, c := range idle[:20] {
		_ = c.SetReadDeadline(deadline)
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("idle connection %d: %v; want it closed by the server (EOF) within 15 s", i, err)
			break
		}
	}
}
