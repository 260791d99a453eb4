package overlay

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
)

// logBuffer collects log lines for assertions (safe for concurrent writers).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count counts the lines holding every one of parts.
func (b *logBuffer) count(parts ...string) int {
	n := 0
	for _, l := range strings.Split(b.String(), "\n") {
		ok := l != ""
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			n++
		}
	}
	return n
}

func newLog(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// TestHostTokenSurvivesPassingRefusals: the controller refusing the host token a few times (a
// restored etcd, a misconfigured controller for a moment) does not make the agent drop it: it keeps
// the token, in its own file, and goes on with it once it is accepted again.
func TestHostTokenSurvivesPassingRefusals(t *testing.T) {
	ctl := newFakeController()
	path := filepath.Join(t.TempDir(), "overlay.json")
	h := newHarness(t, ctl, path)
	tokenPath := filepath.Join(filepath.Dir(path), "host-token")
	if b, err := os.ReadFile(tokenPath); err != nil || strings.TrimSpace(string(b)) != "ovh.host1" {
		t.Fatalf("token file: %q, %v; want the host token", b, err)
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), "ovh.host1") {
		t.Fatal("the host token is in the state file too; want it in its own file only")
	}
	ctl.mu.Lock()
	ctl.refuse, ctl.tokens = 2, nil // two heartbeats refused in a row: fewer than TokenRefusals (3)
	ctl.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, func() error {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		if ctl.refuse > 0 {
			return fmt.Errorf("%d refusals to go", ctl.refuse)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // longer than TokenRefusalWindow, several heartbeats
	ctl.mu.Lock()
	tokens := ctl.tokens
	ctl.mu.Unlock()
	for _, tok := range tokens {
		if tok == "join" {
			t.Fatalf("the agent used the join token after two refusals (tokens %v); want it to keep its host token", tokens)
		}
	}
	if _, err := h.d.ready(); err != nil {
		t.Fatalf("agent after passing refusals: %v", err)
	}
	if _, err := os.Stat(tokenPath); err != nil {
		t.Fatalf("token file after passing refusals: %v", err)
	}
}

// TestDamagedTokenFileIsSetAside: a damaged token file does not stop the agent: it is set aside,
// with an error that names ovctl node reset-token.
func TestDamagedTokenFileIsSetAside(t *testing.T) {
	ctl := newFakeController()
	dir := t.TempDir()
	tokenPath := filepath.Join(dir, "host-token")
	if err := os.WriteFile(tokenPath, []byte("\x00\x00garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	d, err := New(Config{Host: "host1", Address: harnessAddr, StatePath: filepath.Join(dir, "overlay.json"),
		Connect: ctl.connect, Dataplane: &fakeDataplane{}, Members: &fakeMembers{}, Log: newLog(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	if d.token != "" {
		t.Fatalf("token %q from a damaged file", d.token)
	}
	if _, err := os.Stat(tokenPath + ".damaged"); err != nil {
		t.Fatalf("damaged token file not set aside: %v", err)
	}
	if logs.count("level=ERROR", "reset-token host1") != 1 {
		t.Fatalf("want one error naming ovctl node reset-token host1; logs:\n%s", logs.String())
	}
}

// TestControllerLossAndRecoveryLoggedOnce: an agent says, at info level and once each, that it lost
// the controller and that the controller is back.
func TestControllerLossAndRecoveryLoggedOnce(t *testing.T) {
	ctl := newFakeController()
	var logs logBuffer
	h := startAgent(t, Config{Host: "host1", Address: harnessAddr, StatePath: filepath.Join(t.TempDir(), "overlay.json"),
		Connect: ctl.connect, JoinToken: "join", RequestTimeout: time.Second, Heartbeat: 20 * time.Millisecond, Log: newLog(&logs)})
	testutil.Eventually(t, 5*time.Second, func() error { _, err := h.d.ready(); return err })
	ctl.mu.Lock()
	ctl.down = true
	ctl.mu.Unlock()
	time.Sleep(300 * time.Millisecond) // many failed heartbeats
	ctl.mu.Lock()
	ctl.down = false
	ctl.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, func() error {
		if logs.count("level=INFO", "the controller answers again") == 0 {
			return fmt.Errorf("no recovery logged yet")
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	lost, back := logs.count("level=INFO", "lost contact with the controller"), logs.count("level=INFO", "the controller answers again")
	if lost != 1 || back != 1 {
		t.Fatalf("logged the loss %d times and the recovery %d times at info, want once each; logs:\n%s", lost, back, logs.String())
	}
}

// harnessAddr is the underlay address of the harness's host1.
var harnessAddr = netip.MustParseAddr("192.168.77.11")

// TestTokenMovesOutOfStateFile: an agent upgraded from a version that kept the host token in
// state.json moves it to its own file and keeps using it.
func TestTokenMovesOutOfStateFile(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(state, []byte(`{"hostToken":"ovh.host1","networks":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl := newFakeController()
	d, err := New(Config{Host: "host1", Address: harnessAddr, StatePath: state, Connect: ctl.connect, Dataplane: &fakeDataplane{}, Members: &fakeMembers{}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "host-token"))
	if err != nil || strings.TrimSpace(string(b)) != "ovh.host1" || d.token != "ovh.host1" {
		t.Fatalf("token file %q (%v), token %q; want the token from the state file", b, err, d.token)
	}
	if b, _ := os.ReadFile(state); strings.Contains(string(b), "ovh.host1") {
		t.Fatalf("the state file still holds the token:\n%s", b)
	}
}
