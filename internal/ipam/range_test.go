package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		name, subnet, gateway, ipRange string
		want                           Range
		wantErr                        string // substring; "" = no error
	}{
		{name: "defaults", subnet: "10.1.0.0/24",
			want: Range{Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: a("10.1.0.1"), First: a("10.1.0.1"), Last: a("10.1.0.254")}},
		{name: "explicit gateway", subnet: "10.1.0.0/24", gateway: "10.1.0.254",
			want: Range{Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: a("10.1.0.254"), First: a("10.1.0.1"), Last: a("10.1.0.254")}},
		{name: "ip-range", subnet: "10.1.0.0/16", ipRange: "10.1.5.0/24",
			want: Range{Subnet: netip.MustParsePrefix("10.1.0.0/16"), Gateway: a("10.1.0.1"), First: a("10.1.5.0"), Last: a("10.1.5.255")}},
		{name: "ip-range at subnet edge keeps network and broadcast out", subnet: "10.1.0.0/24", ipRange: "10.1.0.0/25",
			want: Range{Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: a("10.1.0.1"), First: a("10.1.0.1"), Last: a("10.1.0.127")}},
		{name: "malformed CIDR", subnet: "10.1.0.0/33", wantErr: `subnet "10.1.0.0/33" is not an IPv4 CIDR`},
		{name: "ipv6", subnet: "fd00::/64", wantErr: "not an IPv4 CIDR"},
		{name: "host bits", subnet: "10.1.0.5/24", wantErr: "did you mean 10.1.0.0/24"},
		{name: "too small", subnet: "10.1.0.0/31", wantErr: "too small"},
		{name: "gateway not an address", subnet: "10.1.0.0/24", gateway: "x", wantErr: `gateway "x" is not an IPv4 address`},
		{name: "gateway outside", subnet: "10.1.0.0/24", gateway: "10.2.0.1", wantErr: "gateway 10.2.0.1 is not a usable address of subnet 10.1.0.0/24"},
		{name: "gateway is network address", subnet: "10.1.0.0/24", gateway: "10.1.0.0", wantErr: "not a usable address"},
		{name: "gateway is broadcast", subnet: "10.1.0.0/24", gateway: "10.1.0.255", wantErr: "not a usable address"},
		{name: "ip-range outside", subnet: "10.1.0.0/24", ipRange: "10.1.1.0/24", wantErr: "ip-range 10.1.1.0/24 is not inside subnet 10.1.0.0/24"},
		{name: "ip-range larger", subnet: "10.1.0.0/24", ipRange: "10.1.0.0/23", wantErr: "not inside subnet"},
		{name: "ip-range only the gateway", subnet: "10.1.0.0/24", ipRange: "10.1.0.0/31", wantErr: "leaves no address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRange(tc.subnet, tc.gateway, tc.ipRange)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want invalid argument containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNext(t *testing.T) {
	r := mustRange(t, "10.0.0.0/29", "", "") // usable .1-.6, gateway .1
	tests := []struct {
		name  string
		after netip.Addr
		taken []string
		want  string // "" = exhausted
	}{
		{name: "first skips gateway", want: "10.0.0.2"},
		{name: "after cursor", after: a("10.0.0.3"), want: "10.0.0.4"},
		{name: "skips taken", after: a("10.0.0.3"), taken: []string{"10.0.0.4", "10.0.0.5"}, want: "10.0.0.6"},
		{name: "wraps without broadcast or network", after: a("10.0.0.6"), want: "10.0.0.2"},
		{name: "wraps past taken", after: a("10.0.0.5"), taken: []string{"10.0.0.6", "10.0.0.2"}, want: "10.0.0.3"},
		{name: "cursor outside range restarts", after: a("192.168.0.1"), want: "10.0.0.2"},
		{name: "last free is the cursor itself", after: a("10.0.0.4"), taken: []string{"10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"}, want: "10.0.0.4"},
		{name: "exhausted", taken: []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set := map[netip.Addr]bool{}
			for _, s := range tc.taken {
				set[a(s)] = true
			}
			got, err := r.Next(tc.after, func(x netip.Addr) bool { return set[x] })
			if tc.want == "" {
				if !errors.Is(err, errdefs.ErrExhausted) {
					t.Fatalf("got %v, %v; want exhausted", got, err)
				}
				return
			}
			if err != nil || got != a(tc.want) {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// TestNextFitCycle: a container that comes and goes over and over gets each free address in turn; an
// address just released comes back only after every other free address was used.
func TestNextFitCycle(t *testing.T) {
	r := mustRange(t, "10.0.0.0/28", "", "") // 13 usable (.2-.14)
	held := map[netip.Addr]bool{a("10.0.0.5"): true, a("10.0.0.9"): true}
	free := r.Size() - len(held)
	var cursor netip.Addr
	seen := map[netip.Addr]int{}
	for i := 0; i < free*3; i++ {
		x, err := r.Next(cursor, func(x netip.Addr) bool { return held[x] })
		if err != nil {
			t.Fatal(err)
		}
		if held[x] || x == r.Gateway {
			t.Fatalf("handed out %s, which is held or the gateway", x)
		}
		cursor = x
		seen[x]++ // and released again at once
	}
	if len(seen) != free {
		t.Fatalf("%d distinct addresses handed out, want %d", len(seen), free)
	}
	for x, n := range seen {
		if n != 3 {
			t.Fatalf("%s handed out %d times in 3 passes: released addresses are reused too soon", x, n)
		}
	}
}

func TestCheck(t *testing.T) {
	r := mustRange(t, "10.1.0.0/24", "10.1.0.1", "10.1.0.128/25")
	tests := []struct{ ip, wantErr string }{
		{"10.1.0.200", ""},
		{"10.2.0.5", "outside subnet 10.1.0.0/24"},
		{"10.1.0.0", "network address"},
		{"10.1.0.255", "broadcast address"},
		{"10.1.0.1", "gateway"},
		{"10.1.0.5", "outside the ip-range"},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			err := r.Check(a(tc.ip))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestPickSubnet(t *testing.T) {
	pool := netip.MustParsePrefix("10.128.0.0/16")
	tests := []struct {
		name  string
		bits  int
		avoid []string
		want  string // "" = exhausted
	}{
		{name: "empty", bits: 24, want: "10.128.0.0/24"},
		{name: "skips used", bits: 24, avoid: []string{"10.128.0.0/24", "10.128.1.0/24"}, want: "10.128.2.0/24"},
		{name: "skips a larger one", bits: 24, avoid: []string{"10.128.0.0/20"}, want: "10.128.16.0/24"},
		{name: "skips a smaller one", bits: 24, avoid: []string{"10.128.0.64/26"}, want: "10.128.1.0/24"},
		{name: "fills a hole", bits: 24, avoid: []string{"10.128.0.0/24", "10.128.2.0/24"}, want: "10.128.1.0/24"},
		{name: "pool inside an avoided prefix", bits: 24, avoid: []string{"10.0.0.0/8"}},
		{name: "exhausted", bits: 17, avoid: []string{"10.128.0.0/17", "10.128.128.0/17"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var avoid []netip.Prefix
			for _, s := range tc.avoid {
				avoid = append(avoid, netip.MustParsePrefix(s))
			}
			got, err := PickSubnet(pool, tc.bits, avoid)
			if tc.want == "" {
				if !errors.Is(err, errdefs.ErrExhausted) {
					t.Fatalf("got %v, %v; want exhausted", got, err)
				}
				return
			}
			if err != nil || got != netip.MustParsePrefix(tc.want) {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestNextVNI(t *testing.T) {
	tests := []struct {
		name     string
		after    uint32
		taken    []uint32
		want     uint32 // 0 = exhausted
		min, max uint32
	}{
		{name: "first", min: 4096, max: 4100, want: 4096},
		{name: "after", after: 4097, min: 4096, max: 4100, want: 4098},
		{name: "skips taken", after: 4097, taken: []uint32{4098, 4099}, min: 4096, max: 4100, want: 4100},
		{name: "wraps", after: 4100, taken: []uint32{4096}, min: 4096, max: 4100, want: 4097},
		{name: "exhausted", taken: []uint32{1, 2, 3}, min: 1, max: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NextVNI(tc.after, tc.min, tc.max, func(v uint32) bool {
				for _, x := range tc.taken {
					if x == v {
						return true
					}
				}
				return false
			})
			if tc.want == 0 {
				if !errors.Is(err, errdefs.ErrExhausted) {
					t.Fatalf("got %d, %v; want exhausted", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestOverlaps(t *testing.T) {
	p := netip.MustParsePrefix
	if !Overlaps(p("10.1.0.0/16"), p("10.1.2.0/24")) || Overlaps(p("10.1.0.0/24"), p("10.1.1.0/24")) {
		t.Fatal("Overlaps is wrong")
	}
}

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

func mustRange(t *testing.T, subnet, gw, ipRange string) Range {
	t.Helper()
	r, err := ParseRange(subnet, gw, ipRange)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
