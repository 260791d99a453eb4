package vxlan_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/vxlan"
)

// noRaw is an iptables on a kernel without the raw table (where the filter's guard goes): every
// restore into it fails, with iptables-restore's message.
type noRaw struct{ iptables.Client }

func (c noRaw) Restore(table string, lines []string) error {
	if table == "raw" {
		return fmt.Errorf("iptables-restore of %d lines into table raw: exit status 1: iptables-restore v1.8.9 (nf_tables): can't initialize iptables table `raw': Table does not exist (do you need to insmod?)", len(lines))
	}
	return c.Client.Restore(table, lines)
}

// Fail closed: when the VXLAN ingress filter cannot be installed, no VXLAN device, gateway or container
// interface comes up, and the error says what is missing. Once iptables works, the network comes up.
func TestFilterNotInstalledNoDevice(t *testing.T) {
	var real iptables.Client
	w := newWorld(t, 1500, func(c *vxlan.Config) { real = c.IPTables; c.IPTables = noRaw{c.IPTables} })
	err := w.d.Reconcile(context.Background(), states[1].state)
	if err == nil {
		t.Fatalf("reconcile succeeded without the VXLAN filter; state:\n%s", w.render())
	}
	for _, want := range []string{"VXLAN ingress filter", "no overlay network is brought up", "raw", "table `raw': Table does not exist"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	links := w.nl.Render("") + w.nl.Render("/c1")
	if got := links; strings.Contains(got, "ovvx-") || strings.Contains(got, "ovgw-") || strings.Contains(got, "macvlan") {
		t.Errorf("devices came up without their filter:\n%s", got)
	}

	cfg := vxlan.DefaultConfig()
	cfg.LocalIP, cfg.IPForward, cfg.IsolateFrom, cfg.Netlink, cfg.IPTables = a("192.168.77.1"), false, []string{"docker0"}, w.nl, real
	d, err := vxlan.New(cfg)
	must(t, err)
	w.d = d
	w.apply(t, states[1].state, states[1].want)
}
