package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/dns"
	"github.com/ovnet/ov/internal/driver"
	"github.com/ovnet/ov/internal/testutil"
)

func TestRenderResolvConf(t *testing.T) {
	host := []byte("# generated\nnameserver 192.0.2.1\nnameserver 127.0.0.53\nsearch corp.example lab.example\noptions edns0 rotate\n")
	for _, tt := range []struct {
		name     string
		req      api.ContainerCreate
		embedded bool
		want     string
	}{
		{name: "default bridge: the host's file as it is", want: string(host)},
		{name: "default bridge with --dns", req: api.ContainerCreate{DNS: []string{"198.51.100.53"}},
			want: "nameserver 198.51.100.53\nsearch corp.example lab.example\noptions edns0 rotate\n"},
		{name: "default bridge with --dns-search and --dns-option", req: api.ContainerCreate{DNSSearch: []string{"example.com."}, DNSOptions: []string{"ndots:2"}},
			want: "nameserver 192.0.2.1\nnameserver 127.0.0.53\nsearch example.com\noptions ndots:2\n"},
		{name: "user-defined network", embedded: true,
			want: "nameserver 127.0.0.11\nsearch corp.example lab.example\noptions ndots:0 edns0 rotate\n"},
		{name: "user-defined network with --dns (the resolver forwards there)", embedded: true, req: api.ContainerCreate{DNS: []string{"198.51.100.53"}},
			want: "nameserver 127.0.0.11\nsearch corp.example lab.example\noptions ndots:0 edns0 rotate\n"},
		{name: "user-defined network with --dns-search . and --dns-option", embedded: true, req: api.ContainerCreate{DNSSearch: []string{"."}, DNSOptions: []string{"timeout:1"}},
			want: "nameserver 127.0.0.11\noptions ndots:0 timeout:1\n"},
		{name: "user-defined network, ndots given", embedded: true, req: api.ContainerCreate{DNSOptions: []string{"ndots:3"}},
			want: "nameserver 127.0.0.11\nsearch corp.example lab.example\noptions ndots:3\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, string(renderResolvConf(host, tt.req, tt.embedded))); diff != "" {
				t.Errorf("resolv.conf (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEndpointNames(t *testing.T) {
	got := endpointNames("web", "WEB", []string{"www", "bad name", "web", "db.front"})
	if diff := cmp.Diff([]string{"web", "www", "db.front"}, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if got := endpointNames("x.", "0123456789ab", nil); !slices.Equal(got, []string{"0123456789ab"}) {
		t.Errorf("a name that is not a DNS name: %q", got)
	}
}

// fakeResolver records the clients the agent gives the resolver.
type fakeResolver struct {
	mu      sync.Mutex
	clients map[string]dns.Client
}

func (r *fakeResolver) Add(_ context.Context, c dns.Client) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clients[c.Container] = c
	return nil
}

func (r *fakeResolver) SetNetworks(container string, networks []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.clients[container]
	c.Networks = networks
	r.clients[container] = c
}

func (r *fakeResolver) Remove(container string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.clients, container)
}

// namingDriver attaches containers (addresses 10.0.0.2, .3, ...) and records the names published.
type namingDriver struct {
	netDriver
	mu        sync.Mutex
	next      int
	published map[string][]string // network/container -> names
}

func (d *namingDriver) Attach(_ context.Context, req driver.AttachRequest) (api.ContainerEndpoint, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	d.published[req.Network+"/"+req.Container] = req.Names
	return api.ContainerEndpoint{Network: req.Network, Driver: api.DriverOverlay, IP: fmt.Sprintf("10.0.0.%d", d.next+1)}, nil
}

func (d *namingDriver) Detach(context.Context, string, string) error { return nil }

func (d *namingDriver) SetNames(_ context.Context, network, container string, names []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.published[network+"/"+container] = names
	return nil
}

func (d *namingDriver) names(network, container string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.published[network+"/"+container]
}

// TestNamesFollowTheContainer: a container's names are in the table on each of its user-defined
// networks, with that network's aliases only, never on the default bridge network; the resolver
// serves it from those networks; connect, disconnect, exit and removal change both at once.
func TestNamesFollowTheContainer(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Root, cfg.RunDir = filepath.Join(dir, "lib"), filepath.Join(dir, "run")
	cfg.Runtime, cfg.ShimCommand, cfg.Images = "/bin/true", []string{"/bin/false"}, noImages{}
	ov := &namingDriver{netDriver: netDriver{nets: []api.Network{{Name: "front", Driver: "overlay"}, {Name: "back", Driver: "overlay", Internal: true}}}, published: map[string][]string{}}
	br := &namingDriver{netDriver: netDriver{nets: []api.Network{{Name: "bridge", Driver: "bridge"}}}, published: map[string][]string{}}
	res := &fakeResolver{clients: map[string]dns.Client{}}
	table := dns.NewTable()
	cfg.Drivers = map[string]driver.NetworkDriver{"overlay": ov, "bridge": br}
	cfg.Resolver, cfg.Names = res, table
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := t.Context()

	id := strings.Repeat("c0", 32)
	rec := api.Container{ID: id, Name: "web", NetNS: "/run/netns/web",
		Config:   api.ContainerCreate{Network: "front", Hostname: "webhost", NetworkAliases: []string{"www"}, DNS: []string{"198.51.100.53"}},
		State:    api.ContainerState{Status: api.StateRunning, Pid: 1},
		Networks: []api.ContainerEndpoint{{Network: "front", Driver: "overlay", IP: "10.0.0.100", Aliases: []string{"www"}}}}
	if err := os.MkdirAll(a.containerDir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	c := a.newContainer(rec)
	a.register(c)
	// What Create does once the container is attached.
	if err := a.serve(ctx, rec); err != nil {
		t.Fatal(err)
	}
	a.setNames(rec)

	lookup := func(network, name string) []netip.Addr { return table.Lookup([]string{network}, name) }
	ip := func(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }
	check := func(step string, network, name string, want []netip.Addr) {
		t.Helper()
		if got := lookup(network, name); !slices.Equal(got, want) {
			t.Errorf("%s: %s on %s = %v, want %v", step, name, network, got, want)
		}
	}
	for _, n := range []string{"web", "webhost", "www", "web.front", "www.front", id[:12]} {
		check("created", "front", n, ip("10.0.0.100"))
	}
	want := dns.Client{Container: id, Netns: "/run/netns/web", Networks: []string{"front"}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.53:53")}}
	if diff := cmp.Diff(want, res.clients[id], cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("resolver client (-want +got):\n%s", diff)
	}

	// Connect to back with its own alias: each alias resolves on its network only.
	if _, err := a.Connect(ctx, "back", api.NetworkConnect{Container: "web", Aliases: []string{"db"}}); err != nil {
		t.Fatal(err)
	}
	check("connected", "back", "db", ip("10.0.0.2"))
	check("connected", "back", "web", ip("10.0.0.2"))
	check("connected", "back", "www", nil)
	check("connected", "front", "db", nil)
	if got := ov.names("back", id); !slices.Equal(got, []string{"web", "webhost", "db"}) {
		t.Errorf("names carried by the overlay driver on back: %q", got)
	}
	if got := res.clients[id].Networks; !slices.Equal(got, []string{"front", "back"}) {
		t.Errorf("resolver networks after connect: %q", got)
	}
	// The default bridge network has no names, and no aliases.
	if _, err := a.Connect(ctx, "bridge", api.NetworkConnect{Container: "web", Aliases: []string{"x"}}); err == nil || !strings.Contains(err.Error(), "user defined networks") {
		t.Errorf("connect to bridge with an alias: %v", err)
	}
	if _, err := a.Connect(ctx, "bridge", api.NetworkConnect{Container: "web"}); err != nil {
		t.Fatal(err)
	}
	check("on bridge", "bridge", "web", nil)
	if got := res.clients[id].Networks; !slices.Equal(got, []string{"front", "back"}) {
		t.Errorf("resolver networks after connecting the default bridge: %q", got)
	}

	if _, err := a.Disconnect(ctx, "back", api.NetworkConnect{Container: "web"}); err != nil {
		t.Fatal(err)
	}
	check("disconnected", "back", "db", nil)
	check("disconnected", "back", "web", nil)
	check("disconnected", "front", "web", ip("10.0.0.100"))
	if got := res.clients[id].Networks; !slices.Equal(got, []string{"front"}) {
		t.Errorf("resolver networks after disconnect: %q", got)
	}

	// An agent restart finds it exited: its names are withdrawn from the other hosts too.
	exited := c.snapshot()
	exited.State.Status = api.StateExited
	a.restoreNames(ctx, exited)
	if got := ov.names("front", id); len(got) != 0 {
		t.Errorf("names of an exited container carried by the overlay driver: %q", got)
	}
	a.namesStarted(ctx, c.snapshot())
	if got := ov.names("front", id); !slices.Equal(got, []string{"web", "webhost", "www"}) {
		t.Errorf("names after a start: %q", got)
	}

	// Removal takes the names out at once and stops serving it.
	c.mu.Lock()
	c.rec.State.Status = api.StateExited
	c.mu.Unlock()
	close(c.exited)
	if err := a.Remove(ctx, "web", false); err != nil {
		t.Fatal(err)
	}
	check("removed", "front", "web", nil)
	check("removed", "front", "www", nil)
	if _, ok := res.clients[id]; ok {
		t.Error("the resolver still serves the removed container")
	}
}

// An --internal network's containers get no forwarding; one network that is not internal is enough
// to forward.
func TestServeNoForwardOnInternalNetworks(t *testing.T) {
	res := &fakeResolver{clients: map[string]dns.Client{}}
	a := &Agent{cfg: Config{Resolver: res, Names: dns.NewTable(), Drivers: map[string]driver.NetworkDriver{
		"overlay": netDriver{nets: []api.Network{{Name: "front", Driver: "overlay"}, {Name: "back", Driver: "overlay", Internal: true}}},
	}}}
	for _, tt := range []struct {
		nets []string
		want bool
	}{{[]string{"back"}, true}, {[]string{"front", "back"}, false}, {[]string{"front"}, false}} {
		rec := api.Container{ID: "c1", NetNS: "/n", Config: api.ContainerCreate{Network: tt.nets[0]}}
		for _, n := range tt.nets {
			rec.Networks = append(rec.Networks, api.ContainerEndpoint{Network: n, Driver: "overlay", IP: "10.0.0.2"})
		}
		if err := a.serve(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		if got := res.clients["c1"].NoForward; got != tt.want {
			t.Errorf("networks %v: NoForward %v, want %v", tt.nets, got, tt.want)
		}
	}
}

// The resolv.conf a create writes: the resolver's on a user-defined network, the host's on the default
// bridge, the target's for container:NAME; it is what the container's /etc/resolv.conf mounts.
func TestResolvConfFor(t *testing.T) {
	dir := t.TempDir()
	hostFile := filepath.Join(dir, "host-resolv.conf")
	if err := os.WriteFile(hostFile, []byte("nameserver 192.0.2.1\nsearch lab.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{RunDir: dir, HostResolvConf: hostFile, Resolver: &fakeResolver{clients: map[string]dns.Client{}}, Names: dns.NewTable()}}
	target := a.newContainer(api.Container{ID: strings.Repeat("d0", 32)})
	if err := os.MkdirAll(a.bundleDir(target.rec.ID), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.bundleDir(target.rec.ID), "resolv.conf"), []byte("nameserver 127.0.0.11\noptions ndots:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		m    netMode
		want string
	}{
		{"user-defined network", netMode{kind: modeNetwork, network: "front"}, "nameserver 127.0.0.11\nsearch lab.example\noptions ndots:0\n"},
		{"default bridge", netMode{kind: modeNetwork, network: "bridge"}, "nameserver 192.0.2.1\nsearch lab.example\n"},
		{"none", netMode{kind: modeNone}, "nameserver 192.0.2.1\nsearch lab.example\n"},
		{"container:NAME", netMode{kind: modeContainer, other: target}, "nameserver 127.0.0.11\noptions ndots:0\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := a.resolvConfFor(api.ContainerCreate{}, tt.m)
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("resolv.conf (-want +got):\n%s", diff)
			}
			bundle := t.TempDir()
			s, err := buildSpec(specInput{ID: strings.Repeat("e0", 32), Create: api.ContainerCreate{Image: "x", Cmd: []string{"sh"}}, Rootfs: "/r",
				Hostname: "h", Bundle: bundle, Cgroup: "/ov/x", ResolvConf: got})
			if err != nil {
				t.Fatal(err)
			}
			written, err := os.ReadFile(filepath.Join(bundle, "resolv.conf"))
			if err != nil || string(written) != tt.want {
				t.Errorf("the bundle's resolv.conf: %q, %v", written, err)
			}
			if !slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool {
				return m.Destination == "/etc/resolv.conf" && m.Source == filepath.Join(bundle, "resolv.conf")
			}) {
				t.Error("/etc/resolv.conf is not mounted from the bundle")
			}
		})
	}
	// Without a resolver, user-defined networks keep the host's file.
	a.cfg.Resolver = nil
	if got := string(a.resolvConfFor(api.ContainerCreate{}, netMode{kind: modeNetwork, network: "front"})); got != "nameserver 192.0.2.1\nsearch lab.example\n" {
		t.Errorf("without a resolver: %q", got)
	}
}

// TestExitTakesNamesOut: when a container's exit is recorded its names leave the table at once, before
// anyone can see the exit, and the overlay driver is told to empty them on the other hosts.
func TestExitTakesNamesOut(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Root, cfg.RunDir = filepath.Join(dir, "lib"), filepath.Join(dir, "run")
	cfg.Runtime, cfg.ShimCommand, cfg.Images = "/bin/true", []string{"/bin/false"}, noImages{}
	ov := &namingDriver{netDriver: netDriver{nets: []api.Network{{Name: "front", Driver: "overlay"}}}, published: map[string][]string{}}
	table := dns.NewTable()
	cfg.Drivers = map[string]driver.NetworkDriver{"overlay": ov}
	cfg.Resolver, cfg.Names = &fakeResolver{clients: map[string]dns.Client{}}, table
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	id := strings.Repeat("f0", 32)
	rec := api.Container{ID: id, Name: "web", NetNS: "/run/netns/web", Config: api.ContainerCreate{Network: "front"},
		State:    api.ContainerState{Status: api.StateRunning, Pid: 1},
		Networks: []api.ContainerEndpoint{{Network: "front", Driver: "overlay", IP: "10.0.0.9"}}}
	if err := os.MkdirAll(a.containerDir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	c := a.newContainer(rec)
	a.register(c)
	a.namesStarted(t.Context(), rec)
	if got := table.Lookup([]string{"front"}, "web"); len(got) != 1 {
		t.Fatalf("running: web = %v", got)
	}
	a.monitor(c) // no shim answers: the exit is recorded at once
	<-c.exited
	if got := table.Lookup([]string{"front"}, "web"); len(got) != 0 {
		t.Fatalf("exited: web still resolves to %v", got)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := ov.names("front", id); len(got) != 0 {
			return fmt.Errorf("names still published for the exited container: %q", got)
		}
		return nil
	})
}

// After an agent restart a running container is served again and its names are back; a quarantined
// one (its record lost) is left alone.
func TestRestoreNames(t *testing.T) {
	res := &fakeResolver{clients: map[string]dns.Client{}}
	table := dns.NewTable()
	a := &Agent{cfg: Config{Resolver: res, Names: table, Drivers: map[string]driver.NetworkDriver{
		"bridge": netDriver{nets: []api.Network{{Name: "local", Driver: "bridge"}}},
	}}}
	rec := api.Container{ID: strings.Repeat("a0", 32), Name: "db", NetNS: "/run/netns/db", Config: api.ContainerCreate{Network: "local"},
		State:    api.ContainerState{Status: api.StateRunning},
		Networks: []api.ContainerEndpoint{{Network: "local", Driver: "bridge", IP: "172.30.0.2", Aliases: []string{"postgres"}}}}
	a.restoreNames(t.Context(), rec)
	if got := table.Lookup([]string{"local"}, "postgres"); len(got) != 1 || got[0].String() != "172.30.0.2" {
		t.Errorf("postgres after a restart: %v", got)
	}
	if c, ok := res.clients[rec.ID]; !ok || !slices.Equal(c.Networks, []string{"local"}) || c.Netns != "/run/netns/db" {
		t.Errorf("resolver client after a restart: %+v (served %v)", c, ok)
	}
	q := rec
	q.ID, q.Name, q.Quarantine = strings.Repeat("b0", 32), "lost", "record missing"
	a.restoreNames(t.Context(), q)
	if _, ok := res.clients[q.ID]; ok || len(table.Lookup([]string{"local"}, "lost")) > 0 {
		t.Error("a quarantined container was served or named")
	}
}
