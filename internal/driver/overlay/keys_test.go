package overlay

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/vxlan"
)

type fakeKeys struct{ key string }

func (k *fakeKeys) PublicKey() string       { return k.key }
func (k *fakeKeys) Rotate() (string, error) { k.key = "rotated"; return k.key, nil }
func (k *fakeKeys) KeyAge() time.Duration   { return time.Hour }
func (k *fakeKeys) Port() int               { return 51820 }
func (k *fakeKeys) PeerAddr(u netip.Addr) netip.Addr {
	a := u.As4()
	return netip.AddrFrom4([4]byte{100, 127, a[2], a[3]})
}

// TestEncryptedDesired: an encrypted network's peers point at the tunnel addresses of their hosts,
// and the tunnel's peers are exactly the hosts serving it that published a key (a host without one
// is no peer: its traffic is dropped, never sent in clear).
func TestEncryptedDesired(t *testing.T) {
	a := netip.MustParseAddr
	d := &Driver{cfg: Config{Keys: &fakeKeys{key: "mine"}}, st: &fileState{Hosts: map[string]api.Host{
		"host2": {Name: "host2", Address: "192.168.77.12", WireGuardKey: "key2"},
		"host3": {Name: "host3", Address: "192.168.77.13"},
		"host4": {Name: "host4", Address: "192.168.77.14", WireGuardKey: "key4"}, // serves no encrypted network
	}}}
	st := vxlan.NetworkState{Peers: []vxlan.Peer{{IP: a("10.9.0.2"), VTEP: a("192.168.77.12")}, {IP: a("10.9.0.3"), VTEP: a("192.168.77.13")}, {IP: a("10.9.0.4"), VTEP: a("192.168.77.12")}}}
	hosts := map[string]vxlan.TunnelPeer{}
	d.encrypted(&st, hosts, []string{"host2", "host3", "host2"})
	wantPeers := []vxlan.Peer{{IP: a("10.9.0.2"), VTEP: a("100.127.77.12")}, {IP: a("10.9.0.3"), VTEP: a("100.127.77.13")}, {IP: a("10.9.0.4"), VTEP: a("100.127.77.12")}}
	if diff := cmp.Diff(wantPeers, st.Peers, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("peers (-want +got):\n%s", diff)
	}
	want := []vxlan.TunnelPeer{{Host: "host2", PublicKey: "key2", Endpoint: netip.MustParseAddrPort("192.168.77.12:51820"), Addr: a("100.127.77.12")}}
	if diff := cmp.Diff(want, tunnelPeers(hosts), cmp.Comparer(func(x, y netip.Addr) bool { return x == y }), cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })); diff != "" {
		t.Errorf("tunnel peers (-want +got):\n%s", diff)
	}
}

type registerOnly struct {
	Controller
	got []api.Host
}

func (r *registerOnly) RegisterHost(_ context.Context, h api.Host) (api.Host, error) {
	r.got = append(r.got, h)
	return h, nil
}

// TestCheckKey: the heartbeat's answer decides: a rotation request makes a new key and publishes it
// (once: a request whose key is not the one in use only republishes), a record without the key in
// use republishes it, a record with it changes nothing.
func TestCheckKey(t *testing.T) {
	for _, tc := range []struct {
		name        string
		record      api.Host
		wantKey     string // published; "" for nothing
		wantRotated bool
	}{
		{"in step", api.Host{WireGuardKey: "mine"}, "", false},
		{"rotation asked", api.Host{WireGuardKey: "mine", RotateKey: true}, "rotated", true},
		{"revoked", api.Host{RotateKey: true}, "rotated", true},
		{"rotated, publication lost", api.Host{WireGuardKey: "older", RotateKey: true}, "mine", false},
		{"key missing", api.Host{}, "mine", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKeys{key: "mine"}
			d := &Driver{cfg: Config{Host: "host1", Address: netip.MustParseAddr("192.168.77.11"), Keys: k, Members: &fakeMembers{}}, log: slog.New(slog.DiscardHandler)}
			ctl := &registerOnly{}
			d.checkKey(context.Background(), ctl, tc.record)
			if (k.key == "rotated") != tc.wantRotated {
				t.Errorf("rotated: %t, want %t", k.key == "rotated", tc.wantRotated)
			}
			switch {
			case tc.wantKey == "" && len(ctl.got) != 0:
				t.Errorf("published %+v; want nothing", ctl.got)
			case tc.wantKey != "" && (len(ctl.got) != 1 || ctl.got[0].WireGuardKey != tc.wantKey):
				t.Errorf("published %+v; want key %q once", ctl.got, tc.wantKey)
			}
		})
	}
}
