package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/ovnet/ov/internal/controller/apply"
	"github.com/ovnet/ov/internal/testutil"
)

// TestClusterExample: the example cluster file is one `ovctl apply -f` accepts, and describes the
// lab's three hosts and two networks.
func TestClusterExample(t *testing.T) {
	data, err := os.ReadFile("examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := apply.Parse("examples/cluster.yaml", data)
	if err != nil {
		t.Fatalf("examples/cluster.yaml does not parse: %v", err)
	}
	var hosts, networks []string
	for _, h := range f.Hosts {
		hosts = append(hosts, h.Name+"@"+h.Address)
	}
	for _, n := range f.Networks {
		networks = append(networks, n.Name+"="+n.Subnet)
	}
	if got, want := strings.Join(hosts, " "), "host1@192.168.77.11 host2@192.168.77.12 host3@192.168.77.13"; got != want {
		t.Errorf("hosts: got %s, want %s (the lab's addresses)", got, want)
	}
	if got, want := strings.Join(networks, " "), "front=10.20.0.0/24 back=10.30.0.0/24"; got != want {
		t.Errorf("networks: got %s, want %s", got, want)
	}
}

// testFlags is a daemon's flag set in miniature, one flag of each kind the daemons use.
func testFlags() *pflag.FlagSet {
	f := pflag.NewFlagSet("daemon", pflag.ContinueOnError)
	f.String("config", "", "")
	f.String("root", "/var/lib/ov", "")
	f.String("socket-mode", "0600", "")
	f.Int("mtu", 1500, "")
	f.Bool("insecure-listen", false, "")
	f.Duration("etcd-timeout", 5*time.Second, "")
	f.StringSlice("etcd-endpoints", nil, "")
	f.StringToString("labels", nil, "")
	return f
}

// readLike reads the file named by "config" as the daemons' readConfigFile does.
func readLike(v *viper.Viper) error {
	v.SetConfigFile(v.GetString("config"))
	v.SetConfigType("yaml")
	return v.ReadInConfig()
}

func TestConfigProblems(t *testing.T) {
	const good = `root: /srv/ov
socket-mode: "0600"
mtu: 9000
insecure-listen: false
etcd-timeout: 5s
# etcd-endpoints: [https://e1:2379]
labels: {zone: a, rack: r1}
`
	for _, tc := range []struct {
		name, file string
		want       []string // substrings, one problem each; none: the file is good
	}{
		{"good", good, nil},
		{"list and commented-out keys", strings.Replace(good, "# etcd-endpoints: [https://e1:2379]", "etcd-endpoints: [https://e1:2379, https://e2:2379]", 1), nil},
		{"unknown key", good + "rootdir: /x\n", []string{`:8: key "rootdir" is not a flag`}},
		{"config key", good + "config: /etc/ov/x.yaml\n", []string{`:8: key "config" is not a flag`}},
		{"unquoted octal", strings.Replace(good, `"0600"`, "0600", 1), []string{`:2: socket-mode: written "0600" but the daemon reads "384"`}},
		{"wrong type", strings.Replace(good, "mtu: 9000", "mtu: big", 1), []string{`:3: mtu: "big" is not a valid --mtu (int)`}},
		{"bad duration", strings.Replace(good, "5s", "5 seconds", 1), []string{`:5: etcd-timeout: "5 seconds" is not a valid`}},
		{"upper-case label key", strings.Replace(good, "zone: a", "Zone: a", 1), []string{`:7: labels: written ["Zone=a" "rack=r1"] but the daemon reads ["rack=r1" "zone=a"]`}},
		{"nested value", strings.Replace(good, "mtu: 9000", "mtu: {a: {b: 1}}", 1), []string{`:3: mtu: write a single value`}},
		{"flag missing", strings.Replace(good, "mtu: 9000\n", "", 1), []string{"flag --mtu is missing"}},
		{"not a mapping", "- a\n- b\n", []string{"one mapping"}},
		{"prose that looks like a key is left alone", good + "# etcd-timeout2: x\n", nil},
		{"one scalar for a list flag", strings.Replace(good, "# etcd-endpoints: [https://e1:2379]", "etcd-endpoints: https://e1:2379", 1), nil},
		{"list for a string flag", strings.Replace(good, "root: /srv/ov", "root: [/srv/ov]", 1), []string{`:1: root: write a single value`}},
		{"comma-separated scalar for a list flag", strings.Replace(good, "# etcd-endpoints: [https://e1:2379]", "etcd-endpoints: https://e1:2379,https://e2:2379", 1), []string{`:6: etcd-endpoints: written ["https://e1:2379" "https://e2:2379"] but the daemon reads ["https://e1:2379,https://e2:2379"]; write one item per line`}},
		{"scalar for a map flag", strings.Replace(good, "labels: {zone: a, rack: r1}", "labels: zone=a", 1), []string{`:7: labels: write a map`}},
		{"unknown and missing", strings.Replace(good, "mtu: 9000", "mtux: 9000", 1), []string{`:3: key "mtux" is not a flag`, "flag --mtu is missing"}},
		{"commented-out key with a bad value", strings.Replace(good, "mtu: 9000", "# mtu: big", 1), []string{`:3: mtu: "big" is not a valid --mtu (int): strconv.ParseInt: parsing "big": invalid syntax (in a commented-out example)`}},
		{"commented-out list with a bad item", strings.Replace(good, "# etcd-endpoints: [https://e1:2379]", "# etcd-endpoints:\n#   - https://e1:2379\n#   - [nested]", 1), []string{`:6: etcd-endpoints: write a list of single values`}},
		{"commented-out list is read as a list", strings.Replace(good, "# etcd-endpoints: [https://e1:2379]", "# etcd-endpoints:\n#   - https://e1:2379\n#   - https://e2:2379\n# Prose after it stays a comment.", 1), nil},
		{"commented-out octal", strings.Replace(good, `socket-mode: "0600"`, "# socket-mode: 0600", 1), []string{`:2: socket-mode: written "0600" but the daemon reads "384"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "daemon.yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ConfigProblems(path, testFlags, readLike)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d: %q", strings.Join(got, "\n"), len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d: %s\nwant it to contain %s", i, got[i], w)
				}
			}
		})
	}
}

// unit reads the [Service] (and [Unit]) settings of a systemd unit file: key → values in order.
func unit(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string][]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is not key=value", path, line)
		}
		m[k] = append(m[k], v)
	}
	return m
}

// TestUnits: the settings users rely on (containers survive an agent restart, the controller keeps
// its data), and systemd accepts the files.
func TestUnits(t *testing.T) {
	for _, tc := range []struct {
		file string
		want map[string]string
	}{
		{"systemd/ovagent.service", map[string]string{
			"ExecStart":   "/usr/local/bin/ovagent --config /etc/ov/agent.yaml",
			"KillMode":    "process", // control-group would kill every shim and container
			"Delegate":    "yes",
			"Restart":     "always",
			"TasksMax":    "infinity",
			"LimitNOFILE": "1048576",
			"After":       "network-online.target",
		}},
		{"systemd/ovcontroller.service", map[string]string{
			"ExecStart":      "/usr/local/bin/ovcontroller --config /etc/ov/controller.yaml",
			"StateDirectory": "ov/controller", // the default --data-dir
			"Restart":        "on-failure",
			"After":          "network-online.target",
		}},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			got := unit(t, tc.file)
			for k, want := range tc.want {
				if !containsValue(got[k], want) {
					t.Errorf("%s=%q, want %s=%s", k, got[k], k, want)
				}
			}
			if _, ok := got["RuntimeDirectory"]; ok {
				t.Errorf("RuntimeDirectory= is removed by systemd at stop, under running containers")
			}
			verify(t, tc.file)
		})
	}
}

func containsValue(vals []string, want string) bool {
	for _, v := range vals {
		if v == want {
			return true
		}
	}
	return false
}

// verify runs `systemd-analyze verify` on a copy of the unit whose binaries exist (stand-ins in a
// temporary directory): it reports unknown keys, bad values and sections.
func verify(t *testing.T, file string) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testutil.Skipf(t, "systemd-analyze is not installed: cannot verify %s with systemd (Debian package systemd; make deps installs it)", file)
	}
	dir := t.TempDir()
	for _, b := range []string{"ovagent", "ovcontroller"} {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.Base(file))
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/", dir+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", path)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", file, err, out)
	}
}
