package vxlan

import (
	"fmt"
	"os"

	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
)

// inNetns runs fn inside the network namespace at path (see netlink.Do).
func inNetns(path string, fn func() error) error { return netlink.Do(path, fn) }

// nsIPTables runs iptables-save and iptables-restore inside one network namespace.
type nsIPTables struct {
	path string
	c    iptables.Client
}

// NewIPTables returns the real iptables client for the network namespace at path ("" = current):
// iptables-save and iptables-restore (iptables.Tables) started from a thread inside that namespace.
func NewIPTables(path string) (iptables.Client, error) {
	c, err := iptables.NewTables()
	if err != nil {
		return nil, err
	}
	if path == "" {
		return c, nil
	}
	return &nsIPTables{path: path, c: c}, nil
}

var _ iptables.Client = (*nsIPTables)(nil)

func (n *nsIPTables) Save(table string) (rules map[string][]iptables.Rule, err error) {
	err = inNetns(n.path, func() error { rules, err = n.c.Save(table); return err })
	return rules, err
}

func (n *nsIPTables) Restore(table string, lines []string) error {
	return inNetns(n.path, func() error { return n.c.Restore(table, lines) })
}

// enableIPForward sets net.ipv4.ip_forward=1 in the namespace at path, if it is not already.
func enableIPForward(path string) (changed bool, err error) {
	const f = "/proc/sys/net/ipv4/ip_forward"
	err = inNetns(path, func() error {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if len(b) > 0 && b[0] == '1' {
			return nil
		}
		changed = true
		return os.WriteFile(f, []byte("1\n"), 0o644)
	})
	if err != nil {
		return changed, fmt.Errorf("enable ip_forward: %w", err)
	}
	return changed, nil
}
