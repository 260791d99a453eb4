package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

// FuzzParsePortSpec: no -p value makes ParsePortSpec panic; a refused one is ErrInvalidArgument with
// the usage; an accepted one renders (String) to a value that parses back to the same mapping, with
// both ports set and a protocol of tcp or udp.
func FuzzParsePortSpec(f *testing.F) {
	for _, s := range []string{"80:8080", "127.0.0.1:80:8080/udp", "0.0.0.0:1:1/TCP", "[::1]:80:80", "::1:80:80",
		"80", "a:b", "65536:1", "1:0", "80:80/sctp", "1.2.3.4:5:6:7", "", "/", ":", "0:80", "01:080"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePortSpec(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), PortSpecUsage) {
				t.Fatalf("ParsePortSpec(%q) = %v, want ErrInvalidArgument with the usage", s, err)
			}
			return
		}
		if p.HostPort == 0 || p.ContainerPort == 0 || (p.Proto != "tcp" && p.Proto != "udp") {
			t.Fatalf("ParsePortSpec(%q) accepted %+v", s, p)
		}
		q, err := ParsePortSpec(p.String())
		if err != nil || q != p {
			t.Fatalf("ParsePortSpec(%q) = %+v renders %q, which parses to %+v, %v", s, p, p.String(), q, err)
		}
		// Two values never both publish one host port.
		if _, err := ParsePortSpecs([]string{s, p.String()}); err == nil {
			t.Fatalf("ParsePortSpecs accepted %q twice", s)
		}
	})
}

// FuzzParseFlags: ParseMount, ParseTail and ParsePortSpecs (one -p value a line) never panic and
// refuse with ErrInvalidArgument.
func FuzzParseFlags(f *testing.F) {
	for _, s := range []string{"/a:/b", "/a:/b:ro", "/a:/b:rw", "a:b:c:d", "all", "10", "-1", "80:80\n80:80/udp", "80:80\n0.0.0.0:80:81", "type=tmpfs,target=/x,tmpfs-size=1m", "vol:/d:ro,nocopy", "/run:size=64m,exec"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name, parse := range map[string]func(string) error{
			"ParseMount":     func(s string) error { _, err := ParseMount(s); return err },
			"ParseMountFlag": func(s string) error { _, err := ParseMountFlag(s); return err },
			"ParseTmpfs":     func(s string) error { _, err := ParseTmpfs(s); return err },
			"ParseTail": func(s string) error {
				n, err := ParseTail(s)
				if err == nil && n < -1 {
					t.Fatalf("ParseTail(%q) = %d", s, n)
				}
				return err
			},
			"ParsePortSpecs": func(s string) error { _, err := ParsePortSpecs(strings.Split(s, "\n")); return err },
		} {
			if err := parse(s); err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("%s(%q) = %v, want ErrInvalidArgument", name, s, err)
			}
		}
	})
}

// validator is a request body the controller or an agent decodes and then validates.
type validator interface{ Validate() error }

// requestTypes are the API request bodies that have a Validate, in the order the fuzzer's first byte
// picks them: the controller's network, host and endpoint, the agent's container create and exec.
var requestTypes = []struct {
	name   string
	new    func() validator
	strict bool // decoded with DisallowUnknownFields, as the agent decodes a container create
}{
	{"Network", func() validator { return &Network{} }, false},
	{"Host", func() validator { return &Host{} }, false},
	{"Endpoint", func() validator { return &Endpoint{} }, false},
	{"ContainerCreate", func() validator { return &ContainerCreate{} }, true},
	{"ExecConfig", func() validator { return &ExecConfig{} }, false},
}

// FuzzRequestValidate: decoding any body into a request type and validating it never panics; a
// refusal is ErrInvalidArgument; and what Validate accepts stays accepted after a round trip through
// JSON (what an agent or controller stores and reads back, or forwards, is still valid).
func FuzzRequestValidate(f *testing.F) {
	seeds := []struct {
		kind byte
		body string
	}{
		{0, `{"name":"front","driver":"overlay","subnet":"10.1.0.0/24","gateway":"10.1.0.1","ipRange":"10.1.0.128/25","vni":4097,"mtu":1450,"labels":{"a":"b"}}`},
		{0, `{"name":"b","driver":"bridge","subnet":"fd00::/64"}`},
		{1, `{"name":"h1","address":"192.168.1.2","labels":{"rack":"r1"}}`},
		{2, `{"network":"front","host":"h1","container":"0123456789abcdef","ip":"10.1.0.5","mac":"02:42:0a:01:00:05"}`},
		{3, `{"name":"web","image":"busybox","cmd":["sh"],"env":["A=b"],"network":"front","ports":[{"hostPort":80,"containerPort":80,"protocol":"tcp"}],"mounts":[{"source":"/a","destination":"/b"}]}`},
		{3, `{"image":"/rootfs","unknown":1}`},
		{4, `{"cmd":["sh","-c","true"],"env":["A=b"],"user":"1000:1000","tty":true}`},
	}
	for _, s := range seeds {
		f.Add(s.kind, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		rt := requestTypes[int(kind)%len(requestTypes)]
		v := rt.new()
		dec := json.NewDecoder(bytes.NewReader(body))
		if rt.strict {
			dec.DisallowUnknownFields()
		}
		if dec.Decode(v) != nil {
			return
		}
		if err := v.Validate(); err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("%s.Validate of %s = %v, want ErrInvalidArgument", rt.name, body, err)
			}
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: valid request %s does not encode: %v", rt.name, body, err)
		}
		w := rt.new()
		if err := json.Unmarshal(b, w); err != nil {
			t.Fatalf("%s: valid request %s encodes to %s, which does not decode: %v", rt.name, body, b, err)
		}
		if err := w.Validate(); err != nil {
			t.Fatalf("%s: valid request %s encodes to %s, which Validate refuses: %v", rt.name, body, b, err)
		}
	})
}
