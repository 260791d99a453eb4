package vxlan

import (
	"fmt"
	"os"

	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
)

// inNetns runs fn inside the network namespace at path (see netlink.Do).
func inNetns(path string, fn func() error) error { return netlink.Do(path, fn) }

// nsIPTables runs every iptables command inside one network namespace.
type nsIPTables struct {
	path string
	c    iptables.Client
}

// NewIPTables returns the real iptables client for the network namespace at path ("" = current): the
// iptables binary (internal/iptables.New) started from a thread inside that namespace.
func NewIPTables(path string) (iptables.Client, error) {
	c, err := iptables.New()
	if err != nil {
		return nil, err
	}
	if path == "" {
		return c, nil
	}
	return &nsIPTables{path: path, c: c}, nil
}

var _ iptables.Client = (*nsIPTables)(nil)

func (n *nsIPTables) ChainExists(table, chain string) (ok bool, err error) {
	err = inNetns(n.path, func() error { ok, err = n.c.ChainExists(table, chain); return err })
	return ok, err
}

func (n *nsIPTables) NewChain(table, chain string) error {
	return inNetns(n.path, func() error { return n.c.NewChain(table, chain) })
}

func (n *nsIPTables) ClearAndDeleteChain(table, chain string) error {
	return inNetns(n.path, func() error { return n.c.ClearAndDeleteChain(table, chain) })
}

func (n *nsIPTables) List(table, chain string) (rules []string, err error) {
	err = inNetns(n.path, func() error { rules, err = n.c.List(table, chain); return err })
	return rules, err
}

func (n *nsIPTables) Exists(table, chain string, rulespec ...string) (ok bool, err error) {
	err = inNetns(n.path, func() error { ok, err = n.c.Exists(table, chain, rulespec...); return err })
	return ok, err
}

func (n *nsIPTables) Insert(table, chain string, pos int, rulespec ...string) error {
	return inNetns(n.path, func() error { return n.c.Insert(table, chain, pos, rulespec...) })
}

func (n *nsIPTables) Delete(table, chain string, rulespec ...string) error {
	return inNetns(n.path, func() error { return n.c.Delete(table, chain, rulespec...) })
}

func (n *nsIPTables) DeleteById(table, chain string, id int) error {
	return inNetns(n.path, func() error { return n.c.DeleteById(table, chain, id) })
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
