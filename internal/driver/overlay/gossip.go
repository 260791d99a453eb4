package overlay

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/membership"
)

// gossipFromState gives gossip what the state file kept from an earlier run: the registered hosts
// (seeds, and the only members accepted) and the keyring. With both, an agent restarted while the
// controller is down gossips at once; with no keyring (a host that never registered) gossip waits.
func (d *Driver) gossipFromState() {
	d.mu.Lock()
	hosts := d.gossipHostsLocked()
	kr := d.st.GossipKeyring
	d.mu.Unlock()
	if len(hosts) > 0 {
		d.cfg.Members.SetHosts(hosts)
	}
	if kr == nil {
		return
	}
	keys, err := decodeKeyring(*kr)
	if err == nil {
		err = d.cfg.Members.SetKeyring(keys)
	}
	if err != nil {
		d.log.Error("the gossip keyring in the state file is not usable; gossip waits for the controller's", "err", err)
	}
}

// gossipHostsLocked lists the known hosts as gossip members (name, address and the cluster's gossip
// port); d.mu is held.
func (d *Driver) gossipHostsLocked() []membership.Host {
	out := make([]membership.Host, 0, len(d.st.Hosts))
	for _, h := range d.st.Hosts {
		a, err := netip.ParseAddr(h.Address)
		if err != nil {
			continue
		}
		out = append(out, membership.Host{Name: h.Name, Addr: netip.AddrPortFrom(a, uint16(d.cfg.GossipPort))})
	}
	return out
}

// decodeKeyring turns the controller's keyring into keys (Keys[0] the primary).
func decodeKeyring(kr api.GossipKeyring) ([][]byte, error) {
	if len(kr.Keys) == 0 {
		return nil, fmt.Errorf("gossip keyring version %d has no key; rotate it (ovctl node gossip-key rotate): %w", kr.Version, errdefs.ErrInvalidArgument)
	}
	keys := make([][]byte, 0, len(kr.Keys))
	for i, s := range kr.Keys {
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("gossip keyring version %d: key %d is not 32 bytes in base64; rotate it (ovctl node gossip-key rotate): %w", kr.Version, i, errdefs.ErrInvalidArgument)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// fetchKeyring reads the cluster's gossip keyring from the controller, hands it to gossip (which
// starts with it, or rotates to it) and keeps it in the state file.
func (d *Driver) fetchKeyring(ctx context.Context, ctl Controller) error {
	kr, err := ctl.GossipKeyring(ctx)
	if err != nil {
		return fmt.Errorf("fetch the cluster's gossip keyring: %w", err)
	}
	keys, err := decodeKeyring(kr)
	if err != nil {
		return err
	}
	if err := d.cfg.Members.SetKeyring(keys); err != nil {
		return err
	}
	d.mu.Lock()
	changed := d.st.GossipKeyring == nil || d.st.GossipKeyring.Version != kr.Version
	d.st.GossipKeyring = &kr
	d.mu.Unlock()
	if changed {
		d.log.Info("gossip keyring", "version", kr.Version, "keys", len(kr.Keys))
		return d.persist()
	}
	return nil
}

// keyringVersion is the version of the keyring gossip uses (0: none yet).
func (d *Driver) keyringVersion() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.st.GossipKeyring == nil {
		return 0
	}
	return d.st.GossipKeyring.Version
}
