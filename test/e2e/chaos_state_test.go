package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/ovnet/ov/api"
)

// chaosState is what the chaos test reads of the lab once the faults are healed: every agent's
// containers, etcd's key space and each host's kernel state.
type chaosState struct {
	ctrs   map[string][]api.Container // host -> ovctl ps -a
	etcd   map[string]string          // key -> value, under /ov/v1/
	nets   map[string]api.Network     // from etcd
	kernel map[string]*hostKernel     // host -> its namespace's overlay state
	mounts []string                   // mount points of the machine
	cgroup []string                   // cgroup directories under the lab's hosts' cgroup parents
	procs  map[string]string          // pid -> command line, of every process naming a 64-hex ID
}

// hostKernel is the overlay state of one host's network namespace.
type hostKernel struct {
	links []string            // names of ov's links (ovvx-, ovgw-, ovbr-, ovep)
	fdb   map[uint32][]string // VNI -> "MAC dst VTEP" entries of ovvx-VNI
	neigh map[uint32][]string // VNI -> "IP MAC STATE" entries of ovvx-VNI
	rules []string            // iptables-save lines of ov's chains (and any partition rule left)
	netns []string            // entries of the agent's netns directory
}

// hexID finds a container ID in a path or a shim's command line (not in a token given as a flag).
var hexID = regexp.MustCompile(`(?:/|--id )([0-9a-f]{64})`)

// idIn returns the container ID s names, or "".
func idIn(s string) string {
	if m := hexID.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

// collect reads the state; an error means something could not be read (an agent that does not answer).
func (c *chaos) collect(ctx context.Context) (*chaosState, error) {
	st := &chaosState{ctrs: map[string][]api.Container{}, kernel: map[string]*hostKernel{}, nets: map[string]api.Network{}}
	for _, h := range c.l.Hosts {
		out, err := c.ovctl(ctx, h.Name, "ps", "-a", "-o", "json")
		if err != nil {
			return nil, err
		}
		var cs []api.Container
		if err := json.Unmarshal([]byte(out), &cs); err != nil {
			return nil, fmt.Errorf("ovctl ps -a -o json on %s: %v\n%s", h.Name, err, out)
		}
		st.ctrs[h.Name] = cs
	}
	var err error
	if st.etcd, err = c.etcdDump(ctx); err != nil {
		return nil, err
	}
	for k, v := range st.etcd {
		if name, ok := strings.CutPrefix(k, "/ov/v1/networks/"); ok {
			var n api.Network
			if err := json.Unmarshal([]byte(v), &n); err != nil {
				return nil, fmt.Errorf("etcd %s: %v: %s", k, err, v)
			}
			st.nets[name] = n
		}
	}
	for _, h := range c.l.Hosts {
		if st.kernel[h.Name], err = c.readKernel(h.Name, h.Netns, h.RunDir, st.nets); err != nil {
			return nil, err
		}
	}
	st.mounts, err = mountPoints(c.l.Config.Dir)
	if err != nil {
		return nil, err
	}
	for _, h := range c.l.Hosts {
		st.cgroup = append(st.cgroup, cgroupDirs(c.l.CgroupParent(&h))...)
	}
	st.procs = idProcesses()
	return st, nil
}

// etcdDump reads every key of ov's schema with etcdctl, from inside the underlay namespace.
func (c *chaos) etcdDump(ctx context.Context) (map[string]string, error) {
	var eps []string
	for _, m := range c.l.Etcd {
		eps = append(eps, m.ClientURL)
	}
	cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+c.l.UnderlayNetns, "--",
		"etcdctl", "--endpoints", strings.Join(eps, ","), "--command-timeout", "5s", "-w", "json", "get", "--prefix", "/ov/v1/")
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("etcdctl get --prefix /ov/v1/: %v", err)
	}
	var resp struct {
		Kvs []struct{ Key, Value string } `json:"kvs"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("etcdctl output: %v", err)
	}
	kv := map[string]string{}
	for _, e := range resp.Kvs {
		k, err1 := base64.StdEncoding.DecodeString(e.Key)
		v, err2 := base64.StdEncoding.DecodeString(e.Value)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("etcdctl output: undecodable key or value %q", e.Key)
		}
		kv[string(k)] = string(v)
	}
	return kv, nil
}

// readKernel reads ov's links, the FDB and neighbour entries of its VXLAN devices, its iptables rules
// and the agent's netns directory of one host.
func (c *chaos) readKernel(host, netns, runDir string, nets map[string]api.Network) (*hostKernel, error) {
	k := &hostKernel{fdb: map[uint32][]string{}, neigh: map[uint32][]string{}}
	out, err := c.l.Exec(host, "ip", "-o", "link", "show")
	if err != nil {
		return nil, fmt.Errorf("ip link on %s: %v %s", host, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		for _, p := range []string{"ovvx-", "ovgw-", "ovbr-", "ovep"} {
			if strings.HasPrefix(name, p) {
				k.links = append(k.links, name)
			}
		}
	}
	sort.Strings(k.links)
	for _, n := range nets {
		if !containsStr(k.links, fmt.Sprintf("ovvx-%d", n.VNI)) {
			continue
		}
		if k.fdb[n.VNI], k.neigh[n.VNI], err = kernelEntries(c.l, host, n.VNI); err != nil {
			return nil, err
		}
	}
	out, err = c.l.Exec(host, "iptables-save")
	if err != nil {
		return nil, fmt.Errorf("iptables-save on %s: %v %s", host, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "OV-OVERLAY") || strings.Contains(line, "ovlab partition") {
			k.rules = append(k.rules, line)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(runDir, "netns"))
	for _, e := range entries {
		k.netns = append(k.netns, e.Name())
	}
	return k, nil
}

// mountPoints lists the mount points at or under dir.
func mountPoints(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	return out, s.Err()
}

// cgroupDirs lists every directory below the cgroup parent in every mounted hierarchy.
func cgroupDirs(parent string) []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	var out []string
	for _, r := range roots {
		base := filepath.Join(r, parent)
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != base {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// idProcesses maps the pid of every process whose command line names a 64-hex ID to that command line.
func idProcesses() map[string]string {
	out := map[string]string{}
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || idIn(strings.ReplaceAll(string(b), "\x00", " ")) == "" {
			continue
		}
		out[filepath.Base(filepath.Dir(p))] = strings.ReplaceAll(string(b), "\x00", " ")
	}
	return out
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
