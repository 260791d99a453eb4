package api

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err = %v, want an invalid-argument error containing %q", err, want)
	}
}

func TestParseDevice(t *testing.T) {
	for _, tc := range []struct {
		in, err string
		want    DeviceMapping
	}{
		{in: "/dev/fuse", want: DeviceMapping{"/dev/fuse", "/dev/fuse", "rwm"}},
		{in: "/dev/sda:/dev/xvdc", want: DeviceMapping{"/dev/sda", "/dev/xvdc", "rwm"}},
		{in: "/dev/sda:/dev/xvdc:r", want: DeviceMapping{"/dev/sda", "/dev/xvdc", "r"}},
		{in: "/dev/sda:rw", want: DeviceMapping{"/dev/sda", "/dev/sda", "rw"}},
		{in: "/dev/sda:/dev/x:rx", err: "permissions \"rx\""},
		{in: "/dev/sda:/dev/x:rr", err: "permissions"},
		{in: "sda", err: "absolute"},
		{in: "/dev/a:b:c:d", err: "too many"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			d, err := ParseDevice(tc.in)
			wantErr(t, err, tc.err)
			if tc.err == "" && d != tc.want {
				t.Errorf("got %+v, want %+v", d, tc.want)
			}
		})
	}
}

func TestParseUlimit(t *testing.T) {
	for _, tc := range []struct {
		in, err string
		want    Ulimit
	}{
		{in: "nofile=1024:2048", want: Ulimit{"nofile", 1024, 2048}},
		{in: "nproc=100", want: Ulimit{"nproc", 100, 100}},
		{in: "core=-1", want: Ulimit{"core", -1, -1}},
		{in: "core=0:-1", want: Ulimit{"core", 0, -1}},
		{in: "nofile", err: "NAME=SOFT[:HARD]"},
		{in: "files=1", err: "unknown limit; use one of core, cpu"},
		{in: "nofile=x", err: "soft limit \"x\""},
		{in: "nofile=1:y", err: "hard limit \"y\""},
		{in: "nofile=2048:1024", err: "soft limit exceeds the hard limit"},
		{in: "nofile=-1:10", err: "soft limit exceeds"},
		{in: "nofile=-5", err: "-1 for unlimited"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ParseUlimit(tc.in)
			wantErr(t, err, tc.err)
			if tc.err == "" && u != tc.want {
				t.Errorf("got %+v, want %+v", u, tc.want)
			}
		})
	}
}

func TestParseExtraHost(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "db:10.0.0.5", want: "db:10.0.0.5"},
		{in: "db=10.0.0.5", want: "db:10.0.0.5"},
		{in: "v6:::1", want: "v6:::1"},
		{in: "v6=[2001:db8::1]", want: "v6:[2001:db8::1]"},
		{in: "gw:host-gateway", want: "gw:host-gateway"},
		{in: "db", err: "missing name or address"},
		{in: "db:nope", err: `"nope" is not an IP address`},
		{in: "a b:1.2.3.4", err: "spaces"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseExtraHost(tc.in)
			wantErr(t, err, tc.err)
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseSecurityOpt(t *testing.T) {
	for _, tc := range []struct{ in, key, val, err string }{
		{in: "no-new-privileges", key: "no-new-privileges", val: "true"},
		{in: "no-new-privileges=false", key: "no-new-privileges", val: "false"},
		{in: "no-new-privileges:true", key: "no-new-privileges", val: "true"},
		{in: "no-new-privileges=maybe", err: `"maybe" is not true or false`},
		{in: "seccomp=unconfined", key: "seccomp", val: "unconfined"},
		{in: `seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`, key: "seccomp", val: `{"defaultAction":"SCMP_ACT_ALLOW"}`},
		{in: `seccomp={"defaultAction":`, err: "not valid JSON"},
		{in: "seccomp", err: "seccomp=unconfined or seccomp=PROFILE.json"},
		{in: "apparmor=unconfined", err: "not supported by ov"},
		{in: "foo=bar", err: "unknown option"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			k, v, err := ParseSecurityOpt(tc.in)
			wantErr(t, err, tc.err)
			if k != tc.key || v != tc.val {
				t.Errorf("got %q=%q, want %q=%q", k, v, tc.key, tc.val)
			}
		})
	}
}

func TestParseEnvFile(t *testing.T) {
	env := map[string]string{"HOME": "/root", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	in := "\uFEFF# comment\n\nA=1\n  B=two words \nHOME\nUNSET\nEMPTY\nQ=\"quoted\"\nC=x=y\n"
	got, err := ParseEnvFile(strings.NewReader(in), "env.list", lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=two words ", "HOME=/root", "EMPTY=", `Q="quoted"`, "C=x=y"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	labels, err := ParseEnvFile(strings.NewReader("a=b\nflag\n"), "labels", nil)
	if err != nil || !reflect.DeepEqual(labels, []string{"a=b", "flag="}) {
		t.Errorf("label file: %q %v", labels, err)
	}
	for _, tc := range []struct{ in, err string }{
		{"=x\n", "env.list line 1: \"=x\" has no variable name"},
		{"A=1\nBAD KEY=1\n", "env.list line 2: variable \"BAD KEY\" contains white space"},
	} {
		_, err := ParseEnvFile(strings.NewReader(tc.in), "env.list", lookup)
		wantErr(t, err, tc.err)
	}
}

func TestParseSignalName(t *testing.T) {
	for in, want := range map[string]int{"TERM": 15, "SIGTERM": 15, "sigquit": 3, "9": 9, "SIGRTMIN+3": 37, "RTMAX-1": 63, "USR1": 10} {
		if got, err := ParseSignalName(in); err != nil || got != want {
			t.Errorf("%s: got %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "NOPE", "RTMIN+40"} {
		_, err := ParseSignalName(in)
		wantErr(t, err, "signal")
	}
}

func TestValidateProc(t *testing.T) {
	neg, ok := -2, 30
	for _, tc := range []struct {
		name string
		c    ContainerCreate
		err  string
	}{
		{"all valid", ContainerCreate{Image: "b", GroupAdd: []string{"audio", "44"}, StopSignal: "SIGQUIT", StopTimeout: &ok,
			Ulimits: []Ulimit{{"nofile", 10, 20}}, Devices: []DeviceMapping{{"/dev/fuse", "/dev/fuse", "rwm"}},
			SecurityOpt: []string{"no-new-privileges=false", "seccomp=unconfined"}, ShmSize: 1 << 20, ExtraHosts: []string{"a:1.2.3.4"}}, ""},
		{"bad group", ContainerCreate{Image: "b", GroupAdd: []string{"a:b"}}, "--group-add"},
		{"bad stop signal", ContainerCreate{Image: "b", StopSignal: "SIGNOPE"}, "--stop-signal: signal \"SIGNOPE\": unknown"},
		{"bad stop timeout", ContainerCreate{Image: "b", StopTimeout: &neg}, "--stop-timeout -2"},
		{"ulimit twice", ContainerCreate{Image: "b", Ulimits: []Ulimit{{"nofile", 1, 1}, {"nofile", 2, 2}}}, "given twice"},
		{"bad device perms", ContainerCreate{Image: "b", Devices: []DeviceMapping{{"/dev/a", "/dev/a", "x"}}}, "--device"},
		{"bad security opt", ContainerCreate{Image: "b", SecurityOpt: []string{"label=disable"}}, "not supported"},
		{"negative shm", ContainerCreate{Image: "b", ShmSize: -1}, "--shm-size"},
		{"host-gateway on none", ContainerCreate{Image: "b", Network: "none", ExtraHosts: []string{"gw:host-gateway"}}, "host-gateway needs a network"},
		{"bad extra host", ContainerCreate{Image: "b", ExtraHosts: []string{"a:b"}}, "--add-host"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.c.Validate(), tc.err) })
	}
}
