package membership

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Prober asks a host's kernel, not its agent, whether the host is there: an answer proves the host
// runs and is reachable on the underlay even while its agent is stopped (ICMP is the one in use).
type Prober interface {
	// Probe reports whether the host at addr (its underlay address) answered within timeout.
	Probe(ctx context.Context, addr netip.Addr, timeout time.Duration) bool
}

// What decides that a host is gone, in order (see Member):
//
//  1. gossip (memberlist's failure detector) suspects the host and declares it dead;
//  2. a direct, authenticated probe of the host's agent from this host (probe.go) is not answered: the
//     agent is down (Agent false), and a rogue member's claim alone changes nothing;
//  3. the host's kernel leaves data plane probes unanswered for DataplaneGrace: the host is gone
//     (Alive false), and every peer withdraws its entries. While the kernel answers, the host's
//     containers still forward and their entries stay, however long the agent stays away.
//
// A host whose agent comes back is alive again as soon as gossip hears it; a withdrawn host whose
// kernel answers again (a healed link, its agent still stopped) gets its entries back at once: its
// kernel is probed every DataplaneInterval for as long as gossip calls it dead.

// verifyLoop checks, directly, every member that gossip calls dead: at once when a claim arrives, then
// every probe period while the claim stands (a withdrawn one only when there is a data plane prober).
func (m *Membership) verifyLoop(ctx context.Context, wg *sync.WaitGroup) {
	period := m.cfg.ProbeInterval
	if m.cfg.Dataplane != nil && m.cfg.DataplaneInterval < period {
		period = m.cfg.DataplaneInterval
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.verify:
		case <-t.C:
		}
		m.mu.Lock()
		list := m.list
		var todo []Member
		for _, e := range m.members {
			if e.gossipDead && !e.probing && e.Name != m.cfg.Name && (e.Alive || m.prober() != nil) {
				e.probing = true
				todo = append(todo, e.Member)
			}
		}
		m.mu.Unlock()
		for _, mb := range todo {
			wg.Add(1)
			go func() { defer wg.Done(); m.check(ctx, list, mb) }()
		}
	}
}

// check probes a member gossip calls dead: its agent and its kernel at once (the kernel's answer
// counts only when the agent is silent).
func (m *Membership) check(ctx context.Context, list *memberlist.Memberlist, mb Member) {
	kernel := make(chan bool, 1)
	go func() {
		p := m.prober()
		kernel <- p != nil && mb.VTEP.IsValid() && p.Probe(ctx, mb.VTEP, m.cfg.DataplaneInterval)
	}()
	agent := mb.Alive && m.probe(list, mb)
	m.settle(mb, agent, <-kernel)
}

// prober is the data plane prober in use, nil when there is none (or it is turned off in a test).
func (m *Membership) prober() Prober {
	if m.unsafe.noDataplane {
		return nil
	}
	return m.cfg.Dataplane
}

// settle records the outcome of the checks of a member gossip calls dead.
func (m *Membership) settle(mb Member, agent, kernel bool) {
	m.mu.Lock()
	e, ok := m.members[mb.Name]
	if !ok || e.Addr != mb.Addr {
		m.mu.Unlock()
		return
	}
	e.probing = false
	if !e.gossipDead {
		m.mu.Unlock()
		return
	}
	if !e.Alive {
		m.revive(e, kernel)
		return
	}
	if agent {
		first := time.Since(e.warned) > time.Minute
		if first {
			e.warned = time.Now()
		}
		m.mu.Unlock()
		if first {
			m.log.Warn("gossip claims a host is dead but it answers a direct probe: its entries stay (a rogue member, or a transient loss)", "host", mb.Name, "addr", mb.Addr)
		}
		return
	}
	now := time.Now()
	agentStopped := e.Agent
	if agentStopped {
		e.Agent, e.kernelSeen = false, time.Time{}
	}
	if kernel {
		e.kernelSeen = now
	}
	silent := now.Sub(e.deadSince)
	if !e.kernelSeen.IsZero() {
		silent = now.Sub(e.kernelSeen)
	}
	gone := m.prober() == nil || silent >= m.cfg.DataplaneGrace
	if gone {
		e.Alive, e.Since = false, now
	}
	out := e.Member
	m.mu.Unlock()
	switch {
	case gone:
		m.logChange(out)
	case agentStopped && kernel:
		m.log.Info("the agent of a host is silent but its kernel answers: its entries stay", "host", mb.Name, "vtep", mb.VTEP)
	case agentStopped:
		m.log.Info("the agent of a host is silent and so is its kernel: its entries go unless it answers soon", "host", mb.Name, "vtep", mb.VTEP, "grace", m.cfg.DataplaneGrace)
	}
	if gone || agentStopped {
		m.kick()
	}
}

// revive gives a withdrawn host its entries back when its kernel answers again (its agent still
// silent: gossip would have said so); m.mu is held and revive releases it.
func (m *Membership) revive(e *entry, kernel bool) {
	if !kernel {
		m.mu.Unlock()
		return
	}
	now := time.Now()
	e.Alive, e.Since, e.kernelSeen = true, now, now
	out := e.Member
	m.mu.Unlock()
	m.log.Info("the kernel of a withdrawn host answers again (its agent is still silent): its entries are back", "host", out.Name, "vtep", out.VTEP)
	m.kick()
}
