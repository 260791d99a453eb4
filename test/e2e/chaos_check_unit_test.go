package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/lab"
)

// chaosFixture is a small converged cluster as TestChaos reads it: three hosts, both networks, four
// running containers and one removed, with etcd and every host's kernel state as they should be.
func chaosFixture() (*chaos, *chaosState) {
	l := &lab.Lab{Config: lab.Config{Prefix: "ovchaos", Dir: "/tmp/x/ovchaos"}}
	for i := 1; i <= 3; i++ {
		l.Hosts = append(l.Hosts, lab.Host{Name: fmt.Sprintf("host%d", i), Addr: fmt.Sprintf("192.168.86.1%d", i)})
	}
	c := &chaos{t: nil, seed: 1, l: l}
	id := func(n int) string { return strings.Repeat(fmt.Sprintf("%x", n), 64) }
	type ctr struct {
		host, net, ip string
	}
	live := []ctr{{"host1", "chaosa", "10.91.0.2"}, {"host2", "chaosa", "10.91.0.3"}, {"host3", "chaosb", "10.92.0.2"}, {"host1", "chaosb", "10.92.0.3"}}
	st := &chaosState{ctrs: map[string][]api.Container{}, etcd: map[string]string{}, kernel: map[string]*hostKernel{},
		nets: map[string]api.Network{"chaosa": {Name: "chaosa", Subnet: "10.91.0.0/24", VNI: 4096}, "chaosb": {Name: "chaosb", Subnet: "10.92.0.0/24", VNI: 4097}}}
	for i, x := range live {
		ct := &chaosCtr{Name: fmt.Sprintf("ch%03d", i), Host: x.host, Net: x.net, ID: id(i + 1), Started: true}
		c.ctrs = append(c.ctrs, ct)
		st.ctrs[x.host] = append(st.ctrs[x.host], api.Container{ID: ct.ID, Name: ct.Name, NetNS: "/ns/" + ct.Name,
			State:    api.ContainerState{Status: api.StateRunning},
			Networks: []api.ContainerEndpoint{{Network: x.net, IP: x.ip}}})
		ep, _ := json.Marshal(api.Endpoint{Network: x.net, Host: x.host, Container: ct.ID, IP: x.ip})
		st.etcd["/ov/v1/endpoints/"+x.net+"/"+x.ip] = string(ep)
		st.etcd["/ov/v1/owners/"+x.net+"/"+x.host+"/"+ct.ID] = x.ip
	}
	c.ctrs = append(c.ctrs, &chaosCtr{Name: "ch004", Host: "host2", Net: "chaosb", ID: id(5), Started: true, Remove: true, Removed: true})
	for _, h := range l.Hosts {
		st.etcd["/ov/v1/hosts/"+h.Name] = "{}"
	}
	for n := range st.nets {
		st.etcd["/ov/v1/networks/"+n] = "{}"
	}
	// the kernel: host1 serves both networks, host2 chaosa, host3 chaosb
	st.kernel["host1"] = &hostKernel{
		links: []string{"ovgw-4096", "ovgw-4097", "ovvx-4096", "ovvx-4097"},
		fdb: map[uint32][]string{
			4096: {"00:00:00:00:00:00 dst 192.168.86.12", "02:42:0a:5b:00:03 dst 192.168.86.12"},
			4097: {"00:00:00:00:00:00 dst 192.168.86.13", "02:42:0a:5c:00:02 dst 192.168.86.13"}},
		neigh: map[uint32][]string{4096: {"10.91.0.3 02:42:0a:5b:00:03 PERMANENT"}, 4097: {"10.92.0.2 02:42:0a:5c:00:02 PERMANENT"}},
		rules: []string{
			"-A OV-OVERLAY-IN -s 192.168.86.12/32 -d 192.168.86.11/32 -i eth0 -p udp -m udp --dport 4789 -m u32 --u32 x -j ACCEPT",
			"-A OV-OVERLAY-IN -s 192.168.86.13/32 -d 192.168.86.11/32 -i eth0 -p udp -m udp --dport 4789 -m u32 --u32 y -j ACCEPT",
			"-A OV-OVERLAY-FWD -i ovgw-4096 -j ACCEPT", "-A OV-OVERLAY-FWD -i ovgw-4097 -j ACCEPT",
			"-A OV-OVERLAY-NAT -s 10.91.0.0/24 ! -o ovgw-4096 -j MASQUERADE", "-A OV-OVERLAY-NAT -s 10.92.0.0/24 ! -o ovgw-4097 -j MASQUERADE"},
		netns: []string{id(1), id(4)},
	}
	st.kernel["host2"] = &hostKernel{
		links: []string{"ovgw-4096", "ovvx-4096"},
		fdb:   map[uint32][]string{4096: {"00:00:00:00:00:00 dst 192.168.86.11", "02:42:0a:5b:00:02 dst 192.168.86.11"}},
		neigh: map[uint32][]string{4096: {"10.91.0.2 02:42:0a:5b:00:02 PERMANENT"}},
		rules: []string{"-A OV-OVERLAY-IN -s 192.168.86.11/32 -d 192.168.86.12/32 -i eth0 -p udp -m udp --dport 4789 -j ACCEPT"},
		netns: []string{id(2)},
	}
	st.kernel["host3"] = &hostKernel{
		links: []string{"ovgw-4097", "ovvx-4097"},
		fdb:   map[uint32][]string{4097: {"00:00:00:00:00:00 dst 192.168.86.11", "02:42:0a:5c:00:03 dst 192.168.86.11"}},
		neigh: map[uint32][]string{4097: {"10.92.0.3 02:42:0a:5c:00:03 PERMANENT"}},
		netns: []string{id(3)},
	}
	st.mounts = []string{"/tmp/x/ovchaos/host1/run/netns/" + id(1), "/tmp/x/ovchaos/host1/run/netns"}
	st.cgroup = []string{"/sys/fs/cgroup/memory/ovchaos-host3/" + id(3)}
	st.procs = map[string]string{"42": "/tmp/x/ovchaos/bin/ovshim --id " + id(2)}
	return c, st
}

// TestChaosChecksFindWhatIsWrong: the chaos test's checks pass on a converged cluster and name each
// kind of damage the issue lists (a check that cannot fail is worse than none). It needs no lab.
func TestChaosChecksFindWhatIsWrong(t *testing.T) {
	c, st := chaosFixture()
	if p := c.check(st); len(p) > 0 {
		t.Fatalf("a converged cluster fails the checks:\n%s", strings.Join(p, "\n"))
	}
	removedID := c.ctrs[4].ID
	cases := []struct {
		name   string
		damage func(c *chaos, st *chaosState)
		want   string
	}{
		{"address held twice", func(c *chaos, st *chaosState) {
			st.ctrs["host2"][0].Networks[0].IP = "10.91.0.2"
		}, "address 10.91.0.2 on chaosa is held by 2 containers"},
		{"address leaked by a removed container", func(c *chaos, st *chaosState) {
			st.etcd["/ov/v1/endpoints/chaosb/10.92.0.9"] = `{"network":"chaosb","host":"host2","container":"` + removedID + `","ip":"10.92.0.9"}`
		}, "etcd allocates 10.92.0.9 on chaosb to the removed container ch004"},
		{"owner key of a removed container", func(c *chaos, st *chaosState) {
			st.etcd["/ov/v1/owners/chaosb/host2/"+removedID] = "10.92.0.9"
		}, "names the removed container ch004"},
		{"container without its allocation", func(c *chaos, st *chaosState) {
			delete(st.etcd, "/ov/v1/endpoints/chaosa/10.91.0.3")
		}, "container ch001 on host2 holds chaosa/10.91.0.3 (running), which etcd does not allocate to it"},
		{"a host missing in etcd", func(c *chaos, st *chaosState) { delete(st.etcd, "/ov/v1/hosts/host3") }, "etcd has hosts [host1 host2]"},
		{"started container lost", func(c *chaos, st *chaosState) {
			st.ctrs["host3"] = nil
			delete(st.etcd, "/ov/v1/endpoints/chaosb/10.92.0.2")
			delete(st.etcd, "/ov/v1/owners/chaosb/host3/"+c.ctrs[2].ID)
		}, "container ch002 on host3: ovctl run -d reported it started"},
		{"started container exited without a record", func(c *chaos, st *chaosState) {
			st.ctrs["host1"][0].State = api.ContainerState{Status: api.StateExited, ExitCode: 255, Error: "the container's shim is gone and recorded no exit"}
		}, "neither running nor a recorded exit"},
		{"removed container still listed", func(c *chaos, st *chaosState) {
			st.ctrs["host2"] = append(st.ctrs["host2"], api.Container{ID: removedID, Name: "ch004", State: api.ContainerState{Status: api.StateExited, FinishedAt: time.Now()}})
		}, "container ch004 on host2 was removed (ovctl rm -f succeeded) but host2 still lists it"},
		{"stale FDB entry", func(c *chaos, st *chaosState) {
			k := st.kernel["host1"]
			k.fdb[4096] = append(k.fdb[4096], "02:42:0a:5b:00:09 dst 192.168.86.12")
			sort.Strings(k.fdb[4096])
		}, "host1: FDB of ovvx-4096 (chaosa)"},
		{"stale neighbour", func(c *chaos, st *chaosState) {
			st.kernel["host2"].neigh[4096] = append(st.kernel["host2"].neigh[4096], "10.91.0.9 02:42:0a:5b:00:09 PERMANENT")
		}, "host2: neighbours of ovvx-4096 (chaosa)"},
		{"link of a network the host does not serve", func(c *chaos, st *chaosState) {
			st.kernel["host2"].links = []string{"ovgw-4096", "ovgw-4097", "ovvx-4096", "ovvx-4097"}
		}, "host2: ov's links are"},
		{"rule for a VTEP the host shares no network with", func(c *chaos, st *chaosState) {
			st.kernel["host2"].rules = append(st.kernel["host2"].rules, "-A OV-OVERLAY-IN -s 192.168.86.13/32 -d 192.168.86.12/32 -i eth0 -p udp -j ACCEPT")
		}, "iptables rule left"},
		{"NAT rule of an unserved network", func(c *chaos, st *chaosState) {
			st.kernel["host3"].rules = []string{"-A OV-OVERLAY-NAT -s 10.91.0.0/24 ! -o ovgw-4096 -j MASQUERADE"}
		}, "iptables rule left"},
		{"partition rule left", func(c *chaos, st *chaosState) {
			st.kernel["host3"].rules = []string{`-A PREROUTING -i eth0 -m comment --comment "ovlab partition" -j DROP`}
		}, "iptables rule left"},
		{"netns of a removed container", func(c *chaos, st *chaosState) {
			st.kernel["host2"].netns = append(st.kernel["host2"].netns, removedID)
		}, "host2: the network namespace of container " + removedID[:12]},
		{"mount of a removed container", func(c *chaos, st *chaosState) {
			st.mounts = append(st.mounts, "/tmp/x/ovchaos/host2/state/images/rootfs/"+removedID+"/merged")
		}, "mount of container ch004"},
		{"cgroup of a removed container", func(c *chaos, st *chaosState) {
			st.cgroup = append(st.cgroup, "/sys/fs/cgroup/pids/ovchaos-host2/"+removedID)
		}, "cgroup of container ch004"},
		{"shim of a removed container", func(c *chaos, st *chaosState) {
			st.procs["43"] = "/tmp/x/ovchaos/bin/ovshim --id " + removedID + " --bundle /tmp/x/ovchaos/host2/run/containers/" + removedID
		}, "process 43 of container ch004"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, st := chaosFixture()
			tc.damage(c, st)
			p := strings.Join(c.check(st), "\n")
			if !strings.Contains(p, tc.want) {
				t.Fatalf("the checks did not report %q; they said:\n%s", tc.want, p)
			}
		})
	}
}
