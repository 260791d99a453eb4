package controller

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/errdefs"
)

// liveness holds the etcd leases this controller keeps alive for the hosts whose heartbeats it
// receives (store/alive.go): one lease per host, renewed with each heartbeat, with a TTL of
// Config.HostDeadAfter. Another controller receiving a host's heartbeats holds a lease of its own and
// moves the host's alive key to it; a lease no key uses any more expires by itself.
type liveness struct {
	mu    sync.Mutex
	hosts map[string]hostLease
}

type hostLease struct {
	id      int64
	written time.Time // when this controller last wrote the host's alive key
}

// markAlive records that host is alive now: it renews this controller's lease for the host (etcd
// LeaseKeepAliveOnce), and rewrites the alive key (attached to that lease, with the time) only when
// it is older than a third of the dead-after time, or on a new lease. No write touches the host
// record.
func (c *Controller) markAlive(ctx context.Context, host string) error {
	now := time.Now().UTC()
	c.live.mu.Lock()
	l, ok := c.live.hosts[host]
	c.live.mu.Unlock()
	if ok {
		err := c.st.KeepAlive(ctx, l.id)
		if err == nil && now.Sub(l.written) < c.cfg.HostDeadAfter/3 {
			return nil
		}
		if err == nil {
			err = c.st.PutAlive(ctx, host, l.id, now)
		}
		if err == nil {
			c.setLease(host, hostLease{id: l.id, written: now})
			return nil
		}
		if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		// The lease expired (the host was silent, or etcd lost it): grant a new one.
	}
	id, err := c.st.GrantAlive(ctx, host, c.cfg.HostDeadAfter, now)
	if err != nil {
		return err
	}
	c.setLease(host, hostLease{id: id, written: now})
	return nil
}

func (c *Controller) setLease(host string, l hostLease) {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	if c.live.hosts == nil {
		c.live.hosts = map[string]hostLease{}
	}
	c.live.hosts[host] = l
}

// forgetLease drops this controller's lease for host (removed, or registered anew): the next
// heartbeat grants a new one and writes the alive key; the old lease, renewed by nobody, expires.
func (c *Controller) forgetLease(host string) {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	delete(c.live.hosts, host)
}

// aliveView is what the API shows of a host's liveness: alive or not, and when it was last seen.
type aliveView struct {
	alive bool
	seen  time.Time
}

// hostView renders a stored host for the API: its effective labels, its state (alive while its alive
// key exists) and when it was last seen (the later of its registration and its last recorded
// heartbeat).
func (c *Controller) hostView(h store.Host, lv aliveView) api.Host {
	out := h.Host
	out.Token = ""
	out.Labels = h.EffectiveLabels()
	out.State = api.HostDead
	if lv.alive {
		out.State = api.HostAlive
	}
	if lv.seen.After(out.LastSeen) {
		out.LastSeen = lv.seen
	}
	return out
}

// aliveNow is the liveness of a host that just registered or heartbeat through this controller.
func aliveNow() aliveView { return aliveView{alive: true, seen: time.Now().UTC()} }
