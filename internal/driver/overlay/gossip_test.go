package overlay

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/membership"
	"github.com/ovnet/ov/internal/testutil"
)

func decoded(keys ...string) [][]byte {
	var out [][]byte
	for _, k := range keys {
		b, _ := base64.StdEncoding.DecodeString(k)
		out = append(out, b)
	}
	return out
}

func (m *fakeMembers) gossipHosts() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, h := range m.hosts {
		out = append(out, h.Name+"="+h.Addr.String())
	}
	slices.Sort(out)
	return out
}

// TestGossipKeyringFetchedKeptAndRotated: a registered host gets the keyring from the controller and
// gives it to gossip with the registered hosts; it keeps both in its 0600 state file, so that a restart
// with the controller down gossips at once; a rotation reaches gossip with the next heartbeat.
func TestGossipKeyringFetchedKeptAndRotated(t *testing.T) {
	ctl := newFakeController()
	ctl.hosts["host2"] = api.Host{Name: "host2", Address: "192.168.77.12"}
	path := filepath.Join(t.TempDir(), "overlay.json")
	h := newHarness(t, ctl, path)
	testutil.Eventually(t, 5*time.Second, func() error {
		if !cmp.Equal(h.mem.keyring(), decoded(key1)) {
			return fmt.Errorf("gossip keyring %x, want key1", h.mem.keyring())
		}
		return nil
	})
	wantHosts := []string{"host1=192.168.77.11:7946", "host2=192.168.77.12:7946"}
	if diff := cmp.Diff(wantHosts, h.mem.gossipHosts()); diff != "" {
		t.Fatalf("gossip hosts (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file holding the keyring has mode %v, want 0600", fi.Mode().Perm())
	}

	ctl.mu.Lock()
	ctl.keyring = api.GossipKeyring{Keys: []string{key2, key1}, Version: 2}
	ctl.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, func() error {
		if !cmp.Equal(h.mem.keyring(), decoded(key2, key1)) {
			return fmt.Errorf("gossip keyring after the rotation %x, want key2, key1", h.mem.keyring())
		}
		return nil
	})

	// Restarted with the controller down: gossip gets the kept keyring and hosts before any join.
	h.stop()
	ctl.mu.Lock()
	ctl.down = true
	ctl.mu.Unlock()
	mem := &fakeMembers{changes: make(chan struct{}, 1)}
	cfg := h.d.cfg
	cfg.Members = mem
	d2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d2.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 5*time.Second, func() error {
		if !cmp.Equal(mem.keyring(), decoded(key2, key1)) || !cmp.Equal(mem.gossipHosts(), wantHosts) {
			return fmt.Errorf("after a restart with the controller down gossip has keys %x and hosts %v", mem.keyring(), mem.gossipHosts())
		}
		return nil
	})
	if _, err := d2.ready(); err == nil {
		t.Fatal("the restarted driver says it joined although the controller is down")
	}
}

// TestNoKeyringNoGossip: a host that never registered has no keyring: gossip is never given one (it
// waits, and never runs in clear); a damaged keyring from the controller is refused with a clear error.
func TestNoKeyringNoGossip(t *testing.T) {
	ctl := newFakeController()
	ctl.down = true
	mem := &fakeMembers{changes: make(chan struct{}, 1)}
	d, err := New(Config{
		Host: "host1", Address: netip.MustParseAddr("192.168.77.11"), StatePath: filepath.Join(t.TempDir(), "overlay.json"),
		Connect: ctl.connect, JoinToken: "join", Dataplane: &fakeDataplane{}, Members: mem,
		RequestTimeout: time.Second, Heartbeat: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	if mem.keyring() != nil {
		t.Fatalf("gossip got keys %x without a registration", mem.keyring())
	}
	_, err = decodeKeyring(api.GossipKeyring{Keys: []string{"c2hvcnQ="}, Version: 7})
	if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("a keyring with a 5-byte key: %v, want an invalid-argument error", err)
	}
}

// TestDeadClaimFromAnotherAddressWithdrawsNothing: a member named like a registered host but gossiping
// from another address (not the host's VTEP) is not that host: its death withdraws nothing.
func TestDeadClaimFromAnotherAddressWithdrawsNothing(t *testing.T) {
	ctl := newFakeController()
	ctl.hosts["host2"] = api.Host{Name: "host2", Address: "192.168.77.12"}
	h := newHarness(t, ctl, filepath.Join(t.TempDir(), "overlay.json"))
	if _, err := h.d.Attach(context.Background(), driver.AttachRequest{Network: "front", Container: "c1", Netns: "/ns/c1"}); err != nil {
		t.Fatal(err)
	}
	h.d.apply("front", api.EndpointEvent{Type: api.EventSnapshot, Revision: 10, Endpoints: []api.Endpoint{
		{Network: "front", Host: "host2", Container: "c2", IP: "10.20.0.3", VTEP: "192.168.77.12"},
	}})
	want := []string{"net front vni=4096 gw=10.20.0.1", "  local 10.20.0.2 eth0 c1", "  peer 10.20.0.3 via 192.168.77.12", "  vtep 192.168.77.12"}
	for _, tc := range []struct {
		name   string
		member membership.Member
		want   []string
	}{
		{"impostor at another address", membership.Member{Name: "host2", Addr: gossipAddr("192.168.77.66")}, want},
		{"host2 itself", membership.Member{Name: "host2", Addr: gossipAddr("192.168.77.12")}, want[:2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.mem.mu.Lock()
			h.mem.members = []membership.Member{tc.member}
			h.mem.mu.Unlock()
			if diff := cmp.Diff(tc.want, render(h.d.desired())); diff != "" {
				t.Fatalf("desired state (-want +got):\n%s", diff)
			}
		})
	}
}
