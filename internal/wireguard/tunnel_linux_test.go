package wireguard

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/testutil"
	"github.com/ovnet/ov/internal/vxlan"
	"github.com/ovnet/ov/internal/vxlan/vxlantest"
)

// TestTunnelUserspace: two hosts (network namespaces) reach each other's tunnel address through
// wireguard-go; the key file is 0600; with a peer's key replaced by a rotation, the other host's
// tunnel works again once it has the new key; a deleted TUN device is made again by the next
// Converge; the blackhole route is in place.
func TestTunnelUserspace(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "ip", "iproute2")
	lab, err := vxlantest.NewLab(fmt.Sprintf("ovwg%x", os.Getpid()&0xffff), 1500)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	dir := t.TempDir()
	var hosts []vxlantest.Host
	var tuns []*Tunnel
	for i := range 2 {
		h, err := lab.AddHost(fmt.Sprintf("h%d", i), netip.AddrFrom4([4]byte{192, 168, 78, byte(10 + i)}))
		if err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.LocalIP, cfg.Netns, cfg.KeyPath, cfg.Userspace = h.Addr, h.Path, filepath.Join(dir, fmt.Sprintf("h%d.key", i)), true
		tun, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tun.Close)
		hosts, tuns = append(hosts, h), append(tuns, tun)
	}
	if st, err := os.Stat(filepath.Join(dir, "h0.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", st, err)
	}
	converge := func(i int) {
		t.Helper()
		o := tuns[1-i]
		peers := []vxlan.TunnelPeer{{Host: hosts[1-i].Name, PublicKey: o.PublicKey(), Endpoint: netip.AddrPortFrom(hosts[1-i].Addr, uint16(o.Port())), Addr: o.Addr()}}
		if err := tuns[i].Converge(context.Background(), peers, 1420); err != nil {
			t.Fatal(err)
		}
	}
	reach := func(what string) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			if err := vxlantest.Ping(hosts[0].Path, tuns[1].Addr(), 84, time.Second); err != nil {
				return fmt.Errorf("%s: h0 cannot ping h1's tunnel address %s: %w", what, tuns[1].Addr(), err)
			}
			return nil
		})
	}
	converge(0)
	converge(1)
	reach("first setup")
	if out, err := exec.Command("ip", "-n", filepath.Base(hosts[0].Path), "route", "show", "type", "blackhole").CombinedOutput(); err != nil || len(out) == 0 {
		t.Errorf("no blackhole route for the tunnel prefix on h0: %v %s", err, out)
	}

	if _, err := tuns[1].Rotate(); err != nil {
		t.Fatal(err)
	}
	converge(0) // h0 learns h1's new key
	reach("after h1 rotated its key")

	if out, err := exec.Command("ip", "-n", filepath.Base(hosts[0].Path), "link", "del", "ovwg0").CombinedOutput(); err != nil {
		t.Fatalf("delete ovwg0: %v %s", err, out)
	}
	if err := vxlantest.Ping(hosts[0].Path, tuns[1].Addr(), 84, time.Second); err == nil {
		t.Errorf("h0 reached h1's tunnel address with its tunnel deleted")
	}
	converge(0)
	reach("after the TUN device was deleted and made again")
}
