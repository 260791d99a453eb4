package apply

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

const header = "apiVersion: ov/v1\nkind: Cluster\n"

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("../../../deploy/examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("cluster.yaml", data)
	if err != nil {
		t.Fatalf("the example does not parse:\n%v", err)
	}
	var got []string
	for _, h := range f.Hosts {
		got = append(got, h.Name+" "+h.Address+" "+labelText(h.Labels))
	}
	for _, n := range f.Networks {
		got = append(got, n.Name+" "+networkText(n.Network))
	}
	want := []string{
		"host1 192.168.77.11 labels zone=a",
		"host2 192.168.77.12 labels zone=a",
		"host3 192.168.77.13 labels zone=b",
		"front overlay 10.20.0.0/24, gateway 10.20.0.1, labels tier=web",
		"back overlay 10.30.0.0/24, internal, labels tier=db",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("example (-want +got):\n%s", d)
	}
}

// TestParseAnchors: YAML anchors and aliases work like writing the value out.
func TestParseAnchors(t *testing.T) {
	f, err := Parse("c.yaml", []byte(header+"networks:\n  - {name: a, labels: &web {tier: web}, internal: &yes true}\n  - {name: b, labels: *web, internal: *yes}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := f.Networks[1]; b.Labels["tier"] != "web" || !b.Internal {
		t.Errorf("aliases not followed: %+v", b.Network)
	}
}

func TestParseDefaults(t *testing.T) {
	f, err := Parse("c.yaml", []byte(header+"networks:\n  - name: a\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Network{{Network: api.Network{Name: "a", Driver: api.DriverOverlay}, Source: Source{Line: 4, Lines: map[string]int{"name": 4}}}}
	if d := cmp.Diff(want, f.Networks); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestParseErrors checks that every kind of mistake is reported with the file, the line and the fix,
// and that all the mistakes of a file are reported at once.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		want string
	}{
		{"empty", "", "c.yaml: the file is empty; start it with apiVersion: ov/v1 and kind: Cluster"},
		{"only comments", "# nothing yet\n", "c.yaml: the file is empty; start it with apiVersion: ov/v1 and kind: Cluster"},
		{"header not a value", "apiVersion: [ov/v1]\nkind: Cluster\n", `c.yaml:1: apiVersion must be a single value, not a list`},
		{"syntax", header + "networks:\n  - name: a\n   subnet: 10.0.0.0/24\n",
			"c.yaml:5: YAML syntax: did not find expected '-' indicator; check this line's indentation against the lines above it"},
		{"tab", header + "networks:\n\t- name: a\n",
			"c.yaml:4: YAML syntax: found character that cannot start any token; indent with spaces, not tabs"},
		{"unclosed flow", header + "networks:\n  - name: a\n    labels: {tier: web\n  - name: b\n",
			"c.yaml:5: YAML syntax: did not find expected ',' or '}'; close the { or [ that this line opens"},
		{"not a mapping", "- a\n- b\n",
			"c.yaml:1: the file must be a mapping with apiVersion, kind, hosts and networks, not a list"},
		{"no header", "networks: []\n",
			"c.yaml:1: apiVersion is missing; add apiVersion: ov/v1\nc.yaml:1: kind is missing; add kind: Cluster"},
		{"wrong header", "apiVersion: ov/v2\nkind: Network\n",
			"c.yaml:1: apiVersion \"ov/v2\" is not supported; use apiVersion: ov/v1\nc.yaml:2: kind \"Network\" is not supported; use kind: Cluster"},
		{"two documents", header + "---\n" + header,
			"c.yaml:3: a second YAML document (after ---) is not supported; put the whole cluster in one document"},
		{"unknown top field", header + "network:\n  - name: a\n",
			`c.yaml:3: the file: unknown field "network"; did you mean "networks"? (known fields: apiVersion, kind, hosts, networks)`},
		{"unknown network field", header + "networks:\n  - name: front\n    driver: overlay\n    subnett: 10.20.0.0/24\n",
			`c.yaml:6: network "front": unknown field "subnett"; did you mean "subnet"? (known fields: name, driver, subnet, gateway, ipRange, vni, mtu, internal, encrypted, labels)`},
		{"snake case field", header + "networks:\n  - name: front\n    ip_range: 10.20.0.0/25\n",
			`c.yaml:5: network "front": unknown field "ip_range"; did you mean "ipRange"? (known fields: name, driver, subnet, gateway, ipRange, vni, mtu, internal, encrypted, labels)`},
		{"unknown host field", header + "hosts:\n  - name: h1\n    address: 192.168.77.11\n    zone: a\n",
			`c.yaml:6: host "h1": unknown field "zone" (known fields: name, address, labels)`},
		{"repeated field", header + "networks:\n  - name: a\n    subnet: 10.1.0.0/24\n    subnet: 10.2.0.0/24\n",
			`c.yaml:6: network "a": field "subnet" is repeated (first at line 5); keep one`},
		{"networks not a list", header + "networks:\n  front: {subnet: 10.0.0.0/24}\n",
			`c.yaml:4: networks must be a list (items starting with "- "), not a mapping`},
		{"malformed cidr", header + "networks:\n  - name: front\n    subnet: 10.20.0.0/33\n",
			`c.yaml:5: network "front": subnet "10.20.0.0/33" is not an IPv4 CIDR such as 10.20.0.0/24`},
		{"host bits", header + "networks:\n  - name: front\n    subnet: 10.20.0.1/24\n",
			`c.yaml:5: network "front": subnet "10.20.0.1/24" has host bits set; did you mean 10.20.0.0/24?`},
		{"gateway outside subnet", header + "networks:\n  - name: front\n    subnet: 10.20.0.0/24\n    gateway: 10.21.0.1\n",
			`c.yaml:6: network "front": gateway 10.21.0.1 is not a usable address of subnet 10.20.0.0/24`},
		{"gateway without subnet", header + "networks:\n  - name: front\n    gateway: 10.21.0.1\n",
			`c.yaml:5: network "front": gateway needs a subnet; add subnet:, or leave gateway out too to let the controller choose`},
		{"ip range outside", header + "networks:\n  - name: front\n    subnet: 10.20.0.0/24\n    ipRange: 10.20.1.0/25\n",
			`c.yaml:6: network "front": ip-range 10.20.1.0/25 is not inside subnet 10.20.0.0/24`},
		{"overlap in file", header + "networks:\n  - name: front\n    subnet: 10.20.0.0/24\n  - name: back\n    subnet: 10.20.0.0/16\n",
			`c.yaml:7: network "back": subnet 10.20.0.0/16 overlaps network "front" (10.20.0.0/24, line 5); choose another subnet`},
		{"duplicate network", header + "networks:\n  - name: front\n  - name: front\n",
			`c.yaml:5: network "front" is declared twice (first at line 4); network names must be unique`},
		{"duplicate vni", header + "networks:\n  - name: a\n    vni: 42\n  - name: b\n    vni: 42\n",
			`c.yaml:7: network "b": VNI 42 is already the VNI of network "a" (line 5); choose another vni, or leave it out`},
		{"bad driver", header + "networks:\n  - name: front\n    driver: vxlan\n",
			`c.yaml:5: network "front": unknown driver "vxlan"; use overlay or bridge`},
		{"bridge driver", header + "networks:\n  - name: front\n    driver: bridge\n",
			`c.yaml:5: network "front": driver bridge makes a network local to one host, which a cluster file cannot declare; use driver: overlay, or run ovctl network create --driver bridge on that host`},
		{"vni out of range", header + "networks:\n  - name: front\n    vni: 16777216\n",
			`c.yaml:5: network "front": VNI 16777216 is out of range; use 1-16777215, or leave vni out to let the controller choose`},
		{"vni zero", header + "networks:\n  - name: front\n    vni: 0\n",
			`c.yaml:5: network "front": VNI 0 is out of range; use 1-16777215, or leave vni out to let the controller choose`},
		{"vni not a number", header + "networks:\n  - name: front\n    vni: ten\n",
			`c.yaml:5: network "front": vni "ten" is not a whole number; use 1-16777215, or leave vni out to let the controller choose`},
		{"mtu too small", header + "networks:\n  - name: front\n    mtu: 100\n",
			`c.yaml:5: network "front": MTU 100 is out of range; use 576-65535, or leave mtu out to derive it from the underlay`},
		{"internal not bool", header + "networks:\n  - name: front\n    internal: maybe\n",
			`c.yaml:5: network "front": internal must be true or false, not "maybe"`},
		{"bad network name", header + "networks:\n  - name: -front\n",
			`c.yaml:4: network name "-front": use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit`},
		{"no name", header + "networks:\n  - subnet: 10.0.0.0/24\n",
			`c.yaml:4: the network at line 4 has no name; add name:`},
		{"reserved label", header + "networks:\n  - name: a\n    labels:\n      ov.apply/managed: \"false\"\n",
			`c.yaml:6: network "a": label "ov.apply/managed" is reserved for ovctl apply (it marks what apply manages); remove it from the file`},
		{"label value not a value", header + "networks:\n  - name: a\n    labels:\n      tier: [web, api]\n",
			`c.yaml:6: network "a": label "tier" must be a single value, not a list`},
		{"labels not a mapping", header + "networks:\n  - name: a\n    labels: [a, b]\n",
			`c.yaml:5: network "a": labels must be a mapping of key: value, not a list`},
		{"host without address", header + "hosts:\n  - name: h1\n",
			`c.yaml:4: host "h1" has no address; add address: with its underlay IPv4 address`},
		{"host bad address", header + "hosts:\n  - name: h1\n    address: 192.168.77.300\n",
			`c.yaml:5: host "h1": address "192.168.77.300" is not an IPv4 address`},
		{"duplicate host name", header + "hosts:\n  - name: h1\n    address: 192.168.77.11\n  - name: h1\n    address: 192.168.77.12\n",
			`c.yaml:6: host "h1" is declared twice (first at line 4); host names must be unique`},
		{"duplicate host address", header + "hosts:\n  - name: h1\n    address: 192.168.77.11\n  - name: h2\n    address: 192.168.77.11\n",
			`c.yaml:7: host "h2": address 192.168.77.11 is already the address of host "h1" (line 5); each host needs its own underlay address`},
		{"several problems", header + "hosts:\n  - name: h1\n    address: nowhere\nnetworks:\n  - name: a\n    subnet: 10.0.0.0/8\n  - name: b\n    subnet: 10.1.0.0/16\n    mtu: 9\n",
			"c.yaml:5: host \"h1\": address \"nowhere\" is not an IPv4 address\n" +
				"c.yaml:10: network \"b\": subnet 10.1.0.0/16 overlaps network \"a\" (10.0.0.0/8, line 8); choose another subnet\n" +
				"c.yaml:11: network \"b\": MTU 9 is out of range; use 576-65535, or leave mtu out to derive it from the underlay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("c.yaml", []byte(tc.file))
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", f)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error is not ErrInvalidArgument: %v", err)
			}
			if d := cmp.Diff(tc.want, err.Error()); d != "" {
				t.Errorf("error (-want +got):\n%s", d)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{"Subnet": "subnet", "gatway": "gateway", "iprange": "ipRange", "colour": ""} {
		if got := suggest(in, networkFields); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: no input makes Parse panic, and every problem it reports is a line of the file (or the
// file as a whole).
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("../../../deploy/examples/cluster.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(header + "networks:\n  - {name: a, subnet: 10.0.0.0/8, labels: &l {a: b}}\n  - {name: b, labels: *l, vni: 7}\n"))
	f.Add([]byte(header + "hosts:\n  - name: h\n    address: 1.2.3.4\n---\nx: y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("f.yaml", data)
		if err == nil {
			if file == nil {
				t.Fatal("no file and no error")
			}
			return
		}
		var fe *FileError
		if !errors.As(err, &fe) || len(fe.Problems) == 0 {
			t.Fatalf("error is not a *FileError with problems: %v", err)
		}
		// YAML breaks lines at \n, \r\n, \r and the Unicode line separators: count generously.
		lines := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) + strings.Count(string(data), "\u0085") + strings.Count(string(data), "\u2028") + strings.Count(string(data), "\u2029") + 1
		for _, p := range fe.Problems {
			if p.Line < 0 || p.Line > lines {
				t.Fatalf("problem at line %d of a %d-line file: %s", p.Line, lines, p.Msg)
			}
		}
	})
}
