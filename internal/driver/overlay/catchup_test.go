package overlay

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vnl "github.com/vishvananda/netlink"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/membership"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/testutil"
	"github.com/ovnet/ov/internal/vxlan"
)

// delRecorder is a fake kernel that records every neighbour and FDB entry deleted.
type delRecorder struct {
	netlink.Namespaces
	mu   sync.Mutex
	dels []string
}

type recHandle struct {
	netlink.Handle
	r *delRecorder
}

func (r *delRecorder) Handle(path string) (netlink.Handle, error) {
	h, err := r.Namespaces.Handle(path)
	if err != nil {
		return nil, err
	}
	return recHandle{h, r}, nil
}

func (h recHandle) NeighDel(n *vnl.Neigh) error {
	h.r.mu.Lock()
	h.r.dels = append(h.r.dels, fmt.Sprintf("%s %s", n.IP, n.HardwareAddr))
	h.r.mu.Unlock()
	return h.Handle.NeighDel(n)
}

// deleted lists the deletions that concern ip or mac.
func (r *delRecorder) deleted(ip, mac string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, d := range r.dels {
		if strings.Contains(d, ip+" ") || strings.HasSuffix(d, " "+mac) {
			out = append(out, d)
		}
	}
	return out
}

// TestRestartKeepsPeersUntilWatchCaughtUp: an agent killed right after a watch event its state file
// has not recorded yet (the saver writes at most every 250 ms) restarts without that endpoint. Until
// the network's watch has caught up (here: replayed the event, then its progress event), the
// restarted agent's reconciles must not delete the endpoint's neighbour and FDB entries, which the
// previous agent programmed and which carry live traffic (a lost ping in test/e2e TestAgentRestart
// before); they add what is new. Once caught up, a deleted endpoint's entries go as usual.
func TestRestartKeepsPeersUntilWatchCaughtUp(t *testing.T) {
	fake := netlink.NewFake()
	if err := fake.AddLink("", &vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: "eth0", MTU: 1500}}, "192.168.77.11/24"); err != nil {
		t.Fatal(err)
	}
	fake.AddNamespace("/c1")
	nl := &delRecorder{Namespaces: fake}
	ipt := iptables.NewFake()
	newDataplane := func() *vxlan.Driver {
		cfg := vxlan.DefaultConfig()
		cfg.LocalIP, cfg.IPForward, cfg.Netlink, cfg.IPTables, cfg.Resync = netip.MustParseAddr("192.168.77.11"), false, nl, ipt, time.Hour
		dp, err := vxlan.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return dp
	}
	ctl := newFakeController()
	ctl.hosts["host2"] = api.Host{Name: "host2", Address: "192.168.77.12"}
	front := ctl.networks["front"]
	c1 := api.Endpoint{Network: "front", Host: "host1", Container: "c1", IP: "10.20.0.2", VTEP: "192.168.77.11"}
	c2 := api.Endpoint{Network: "front", Host: "host2", Container: "c2", IP: "10.20.0.3", VTEP: "192.168.77.12"}
	c3 := api.Endpoint{Network: "front", Host: "host2", Container: "c3", IP: "10.20.0.4", VTEP: "192.168.77.12"}
	c4 := api.Endpoint{Network: "front", Host: "host2", Container: "c4", IP: "10.20.0.5", VTEP: "192.168.77.12"}
	st := func(remote ...api.Endpoint) *fileState {
		ns := &netState{Network: front, Revision: 10, Remote: map[string]api.Endpoint{},
			Local: map[string]localEndpoint{"c1": {Container: "c1", Netns: "/c1", IfName: "eth0", IP: c1.IP}}}
		for _, ep := range remote {
			ns.Remote[remoteKey(ep.Host, ep.Container)] = ep
		}
		return &fileState{Networks: map[string]*netState{"front": ns}, Hosts: map[string]api.Host{"host2": ctl.hosts["host2"]}}
	}
	// The previous agent programmed c2 and c3 (c3's event at revision 11); its state file was written
	// at revision 10, without c3.
	path := filepath.Join(t.TempDir(), "overlay.json")
	prev := &Driver{cfg: Config{Host: "host1", Address: netip.MustParseAddr("192.168.77.11"), Members: &fakeMembers{}}, st: st(c1, c2, c3)}
	if err := newDataplane().Reconcile(context.Background(), prev.desired()); err != nil {
		t.Fatal(err)
	}
	has := func(ip string) bool { return strings.Contains(fake.Render(""), "neigh ovvx-4096 "+ip+" ") }
	if !has(c3.IP) {
		t.Fatalf("test bug: c3 not programmed:\n%s", fake.Render(""))
	}
	b, err := json.Marshal(st(c1, c2))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// The restarted agent; its watch delivers nothing until the test applies events.
	dp := newDataplane()
	d, err := New(Config{Host: "host1", Address: netip.MustParseAddr("192.168.77.11"), StatePath: path, Connect: ctl.connect, JoinToken: "join",
		Dataplane: dp, Members: &fakeMembers{changes: make(chan struct{}, 1)}, Netlink: nl, Heartbeat: 50 * time.Millisecond, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	reconciles := func(n uint64) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, func() error {
			if got := dp.Status().Reconciles; got < n {
				return fmt.Errorf("%d reconciles, want %d", got, n)
			}
			return nil
		})
	}
	reconciles(1)
	testutil.Eventually(t, 5*time.Second, func() error { _, err := d.ready(); return err }) // joined: the host list kicked a reconcile too
	time.Sleep(200 * time.Millisecond)
	mac3 := vxlan.MACFromIP(netip.MustParseAddr(c3.IP)).String()
	// An event that is no catch-up: c4 is added, c3 still kept.
	d.apply("front", api.EndpointEvent{Type: api.EventPut, Endpoint: &c4, Revision: 12, Last: true})
	testutil.Eventually(t, 5*time.Second, func() error {
		if !has(c4.IP) {
			return fmt.Errorf("c4 not programmed")
		}
		return nil
	})
	if st := dp.Status(); st.Partial == 0 {
		t.Errorf("the watch event was not reconciled for its network alone (status %+v)", st)
	}
	if dels := nl.deleted(c3.IP, mac3); len(dels) > 0 || !has(c3.IP) {
		t.Fatalf("before the watch caught up, the restarted agent deleted the entries of c3, which its state file lacks: %v\n%s", dels, fake.Render(""))
	}
	// The watch catches up: it replays c3 (in the order of the controller, c3 came before c4) and
	// reports progress.
	n := dp.Status().Reconciles
	d.apply("front", api.EndpointEvent{Type: api.EventPut, Endpoint: &c3, Revision: 12, Last: true})
	d.apply("front", api.EndpointEvent{Type: api.EventProgress, Revision: 12})
	reconciles(n + 1)
	if dels := nl.deleted(c3.IP, mac3); len(dels) > 0 || !has(c3.IP) {
		t.Fatalf("the restarted agent deleted the entries of c3: %v\n%s", dels, fake.Render(""))
	}
	// Caught up: a deleted endpoint's entries go.
	d.apply("front", api.EndpointEvent{Type: api.EventDelete, Endpoint: &c3, Revision: 13, Last: true})
	testutil.Eventually(t, 5*time.Second, func() error {
		if has(c3.IP) || strings.Contains(fake.Render(""), mac3) {
			return fmt.Errorf("c3's entries are still there after its deletion:\n%s", fake.Render(""))
		}
		return nil
	})
}

// TestPeersKeptUntilCatchUp: a network's peers are kept from the start until its watch has caught up
// (a snapshot or a progress event), not after any other event.
func TestPeersKeptUntilCatchUp(t *testing.T) {
	ctl := newFakeController()
	d, err := New(Config{Host: "host1", Address: netip.MustParseAddr("192.168.77.11"), StatePath: filepath.Join(t.TempDir(), "overlay.json"),
		Connect: ctl.connect, Dataplane: &fakeDataplane{}, Members: &fakeMembers{}})
	if err != nil {
		t.Fatal(err)
	}
	d.st.Networks["front"] = &netState{Network: ctl.networks["front"],
		Local: map[string]localEndpoint{"c1": {Container: "c1", Netns: "/c1", IfName: "eth0", IP: "10.20.0.2"}}}
	if s := d.desired(); !s.Networks[0].KeepPeers {
		t.Fatalf("before its watch caught up, front's peers are not kept: %+v", s.Networks[0])
	}
	d.apply("front", api.EndpointEvent{Type: api.EventPut, Endpoint: &api.Endpoint{Network: "front", Host: "host2", Container: "c2", IP: "10.20.0.3", VTEP: "192.168.77.12"}, Revision: 20})
	if s := d.desired(); !s.Networks[0].KeepPeers {
		t.Fatalf("after an event that is no catch-up, front's peers are not kept: %+v", s.Networks[0])
	}
	// A dead host's entries go all the same.
	mem := d.cfg.Members.(*fakeMembers)
	mem.mu.Lock()
	mem.members = []membership.Member{{Name: "host2", Addr: gossipAddr("192.168.77.12"), Alive: false}}
	mem.mu.Unlock()
	if s := d.desired(); len(s.Networks[0].Peers) != 0 || fmt.Sprint(s.Networks[0].WithdrawVTEPs) != "[192.168.77.12]" {
		t.Fatalf("with host2 dead, front's state is %+v; want no peer and host2 withdrawn", s.Networks[0])
	}
	d.apply("front", api.EndpointEvent{Type: api.EventSnapshot, Revision: 20})
	if s := d.desired(); s.Networks[0].KeepPeers {
		t.Fatalf("after its snapshot, front's peers are still kept: %+v", s.Networks[0])
	}
}
