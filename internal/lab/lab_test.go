package lab

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/testutil"
)

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.Prefix = "ovlt"
	cfg.Subnet = netip.MustParsePrefix("192.168.78.0/24")
	cfg.Dir = filepath.Join(t.TempDir(), "lab")
	cfg.Hosts = 2
	return cfg
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"long prefix", func(c *Config) { c.Prefix = "muchtoolong" }, "prefix"},
		{"no hosts", func(c *Config) { c.Hosts = 0 }, "hosts"},
		{"small subnet", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.0.0.0/28") }, "subnet"},
		{"external inside", func(c *Config) { c.External = netip.MustParseAddr("192.168.77.200") }, "external"},
		{"mtu", func(c *Config) { c.MTU = 100 }, "MTU"},
		{"etcd members", func(c *Config) { c.EtcdMembers = 8 }, "etcd members"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an invalid-argument error about %s", err, tc.want)
			}
		})
	}
}

func TestUpNeedsBinaries(t *testing.T) {
	cfg := testConfig(t)
	cfg.Bin = t.TempDir()
	_, err := Up(context.Background(), cfg)
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("Up without binaries = %v, want a not-found error saying to run make build", err)
	}
	if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
		t.Fatalf("Up without binaries left %s behind", cfg.Dir)
	}
}

// TestNetworkAndDown builds the lab's namespaces and links (no processes), checks that hosts reach each
// other and the external address over the underlay, and that Down leaves nothing behind.
func TestNetworkAndDown(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig(t)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	l := newLab(cfg)
	t.Cleanup(func() { _ = l.Down(context.Background()) })
	if err := l.save(); err != nil {
		t.Fatal(err)
	}
	if err := l.buildNetwork(); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(cfg.Dir); err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, target := range []string{l.Hosts[1].Addr, cfg.External.String()} {
		if out, err := l.Exec("host1", "/bin/busybox", "ping", "-c", "1", "-W", "2", target); err != nil {
			t.Fatalf("host1 cannot ping %s: %v\n%s", target, err, out)
		}
	}
	if err := l.Down(context.Background()); err != nil {
		t.Fatalf("Down: %v", err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), cfg.Prefix+"-") {
		t.Fatalf("namespaces left after Down:\n%s", out)
	}
	if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
		t.Fatalf("%s left after Down", cfg.Dir)
	}
}

// TestExternalEtcdLayout: an external etcd's members get distinct addresses in the underlay namespace,
// data under the lab's directory, one initial cluster, and the controller is pointed at all of them;
// the embedded etcd gives the controller no etcd flag.
func TestExternalEtcdLayout(t *testing.T) {
	cfg := testConfig(t)
	if l := newLab(cfg); len(l.Etcd) != 0 || strings.Contains(strings.Join(l.Controller.Argv, " "), "--etcd-endpoints") {
		t.Fatalf("embedded etcd: members %v, controller %v", l.Etcd, l.Controller.Argv)
	}
	cfg.EtcdMembers = 3
	l := newLab(cfg)
	ctrl := strings.Join(l.Controller.Argv, " ")
	seen := map[string]bool{}
	for i, m := range l.Etcd {
		argv := strings.Join(m.Proc.Argv, " ")
		if seen[m.ClientURL] || seen[m.PeerURL] {
			t.Errorf("member %d reuses an address: %s %s", i+1, m.ClientURL, m.PeerURL)
		}
		seen[m.ClientURL], seen[m.PeerURL] = true, true
		if m.Proc.Netns != l.UnderlayNetns || !strings.HasPrefix(m.Dir, cfg.Dir+"/") || !strings.Contains(argv, "--data-dir "+m.Dir) {
			t.Errorf("member %d: netns %s, data %s: want the underlay namespace and data under %s", i+1, m.Proc.Netns, m.Dir, cfg.Dir)
		}
		if !strings.Contains(argv, "--initial-cluster etcd1=http://127.0.1.1:2380,etcd2=http://127.0.1.2:2380,etcd3=http://127.0.1.3:2380 ") {
			t.Errorf("member %d does not list the whole initial cluster: %s", i+1, argv)
		}
		if !strings.Contains(ctrl, m.ClientURL) {
			t.Errorf("the controller is not pointed at member %d (%s): %s", i+1, m.ClientURL, ctrl)
		}
	}
}
