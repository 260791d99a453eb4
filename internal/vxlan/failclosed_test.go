package vxlan_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/vxlan"
)

// noU32 is an iptables whose kernel lacks the u32 match: every restore that uses it fails, as
// iptables-restore does there.
type noU32 struct{ iptables.Client }

func (c noU32) Restore(table string, lines []string) error {
	for _, l := range lines {
		if strings.Contains(l, "-m u32") {
			return fmt.Errorf("iptables-restore of %d lines into table %s: exit status 2: iptables-restore v1.8.9 (nf_tables): Couldn't load match `u32':No such file or directory", len(lines), table)
		}
	}
	return c.Client.Restore(table, lines)
}

// Fail closed: when the VXLAN ingress filter cannot be installed, no VXLAN device, gateway or container
// interface comes up, and the error says what is missing. Once iptables works, the network comes up.
func TestFilterNotInstalledNoDevice(t *testing.T) {
	var real iptables.Client
	w := newWorld(t, 1500, func(c *vxlan.Config) { real = c.IPTables; c.IPTables = noU32{c.IPTables} })
	err := w.d.Reconcile(context.Background(), states[1].state)
	if err == nil {
		t.Fatalf("reconcile succeeded without the VXLAN filter; state:\n%s", w.render())
	}
	for _, want := range []string{"VXLAN ingress filter", "no overlay network is brought up", "u32", "Couldn't load match `u32'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if got := w.render(); strings.Contains(got, "ovvx-") || strings.Contains(got, "ovgw-") || strings.Contains(got, "macvlan") {
		t.Errorf("devices came up without their filter:\n%s", got)
	}

	cfg := vxlan.DefaultConfig()
	cfg.LocalIP, cfg.IPForward, cfg.IsolateFrom, cfg.Netlink, cfg.IPTables = a("192.168.77.1"), false, []string{"docker0"}, w.nl, real
	d, err := vxlan.New(cfg)
	must(t, err)
	w.d = d
	w.apply(t, states[1].state, states[1].want)
}
