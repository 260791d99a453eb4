package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spf13/viper"
)

// TestGossipFlags: --gossip-probe-interval and --gossip-suspicion-mult reach memberlist's
// configuration (the tuning docs/scale.md recommends for large clusters), the probe timeout stays
// within the interval, and nonsense is refused with the allowed range.
func TestGossipFlags(t *testing.T) {
	addr := netip.MustParseAddr("10.0.0.1")
	read := func(args ...string) *viper.Viper {
		t.Helper()
		cmd := newRootCmd()
		if err := cmd.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		v := viper.New()
		if err := v.BindPFlags(cmd.Flags()); err != nil {
			t.Fatal(err)
		}
		return v
	}
	c, err := gossipConfig(read(), "h", addr)
	if err != nil || c.ProbeInterval != 500*time.Millisecond || c.SuspicionMult != 3 || c.ProbeTimeout != 250*time.Millisecond {
		t.Fatalf("defaults: %v %d %v, %v", c.ProbeInterval, c.SuspicionMult, c.ProbeTimeout, err)
	}
	c, err = gossipConfig(read("--gossip-probe-interval=400ms", "--gossip-suspicion-mult=2"), "h", addr)
	if err != nil || c.ProbeInterval != 400*time.Millisecond || c.SuspicionMult != 2 || c.ProbeTimeout != 200*time.Millisecond {
		t.Fatalf("400ms x 2: %v %d %v, %v", c.ProbeInterval, c.SuspicionMult, c.ProbeTimeout, err)
	}
	for _, bad := range [][]string{{"--gossip-probe-interval=10ms"}, {"--gossip-suspicion-mult=0"}} {
		if _, err := gossipConfig(read(bad...), "h", addr); err == nil || !strings.Contains(err.Error(), "at least 100ms") {
			t.Errorf("%v: %v, want a refusal naming the allowed range", bad, err)
		}
	}
}
