package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

func TestValidDNSName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"web", true},
		{"brave_otter", true}, // generated container names have an underscore
		{"web.front", true},
		{"a-1.b-2", true},
		{"0abc", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{strings.Repeat("a.", 126) + "a", true}, // 253 characters
		{strings.Repeat("a.", 127) + "a", false},
		{"", false},
		{"-web", false},
		{"web-", false},
		{"web.", false},
		{".web", false},
		{"a..b", false},
		{"we b", false},
		{"web/1", false},
		{"wéb", false},
		{"web\x00", false},
	} {
		if got := ValidDNSName(tt.name); got != tt.ok {
			t.Errorf("ValidDNSName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestContainerCreateDNSValidation(t *testing.T) {
	for _, tt := range []struct {
		name    string
		req     ContainerCreate
		wantErr string // "" when valid
	}{
		{name: "alias on a user-defined network", req: ContainerCreate{Network: "front", NetworkAliases: []string{"web", "www.front"}}},
		{name: "alias on the default bridge", req: ContainerCreate{NetworkAliases: []string{"web"}}, wantErr: "network-scoped alias is supported only for containers in user defined networks"},
		{name: "alias on bridge by name", req: ContainerCreate{Network: "bridge", NetworkAliases: []string{"web"}}, wantErr: "user defined networks"},
		{name: "alias with host", req: ContainerCreate{Network: "host", NetworkAliases: []string{"web"}}, wantErr: "user defined networks"},
		{name: "alias with none", req: ContainerCreate{Network: "none", NetworkAliases: []string{"web"}}, wantErr: "user defined networks"},
		{name: "alias with container:", req: ContainerCreate{Network: "container:db", NetworkAliases: []string{"web"}}, wantErr: "user defined networks"},
		{name: "alias not a DNS name", req: ContainerCreate{Network: "front", NetworkAliases: []string{"we b"}}, wantErr: `--network-alias "we b" is not a valid DNS name`},
		{name: "too many aliases", req: ContainerCreate{Network: "front", NetworkAliases: strings.Split(strings.Repeat("a,", 31)+"a", ",")}, wantErr: "at most 30"},
		{name: "dns addresses", req: ContainerCreate{DNS: []string{"192.0.2.53", "2001:db8::53"}}},
		{name: "dns not an address", req: ContainerCreate{DNS: []string{"dns.example"}}, wantErr: `--dns "dns.example" is not an IP address`},
		{name: "dns with host", req: ContainerCreate{Network: "host", DNS: []string{"192.0.2.53"}}, wantErr: "--network host"},
		{name: "search domains", req: ContainerCreate{DNSSearch: []string{"example.com", "corp.example.", "."}}},
		{name: "search domain invalid", req: ContainerCreate{DNSSearch: []string{"ex ample"}}, wantErr: "--dns-search"},
		{name: "options", req: ContainerCreate{DNSOptions: []string{"ndots:2", "edns0", "timeout:1"}}},
		{name: "option with a space", req: ContainerCreate{DNSOptions: []string{"ndots:2 rotate"}}, wantErr: "--dns-option"},
		{name: "option with a newline", req: ContainerCreate{DNSOptions: []string{"ndots:2\nnameserver 1.1.1.1"}}, wantErr: "--dns-option"},
		{name: "empty option", req: ContainerCreate{DNSOptions: []string{""}}, wantErr: "--dns-option"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Image = "busybox"
			err := tt.req.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Validate = %v; want an invalid argument saying %q", err, tt.wantErr)
			}
		})
	}
}

func TestEndpointNamesValidation(t *testing.T) {
	base := Endpoint{Network: "front", Host: "host1", Container: strings.Repeat("a", 64)}
	many := make([]string, MaxEndpointNames+1)
	for i := range many {
		many[i] = "n" + strings.Repeat("x", i)
	}
	for _, tt := range []struct {
		name  string
		names []string
		ok    bool
	}{
		{"none", nil, true},
		{"name, hostname, alias", []string{"web", "web-host", "www"}, true},
		{"the limit", many[:MaxEndpointNames], true},
		{"over the limit", many, false},
		{"too long", []string{strings.Repeat("a.", 127) + "a"}, false},
		{"not a name", []string{"web\nevil"}, false},
		{"empty", []string{""}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ep := base
			ep.Names = tt.names
			err := ep.Validate()
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, errdefs.ErrInvalidArgument)) {
				t.Fatalf("Validate = %v; want ok %v", err, tt.ok)
			}
		})
	}
}
