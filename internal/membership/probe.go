package membership

import (
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/hashicorp/memberlist"
)

// The direct probe of a host gossip claims is dead: a memberlist user message (encrypted and
// authenticated with the keyring like all gossip) asking the host to answer, and its answer, sent back
// to the asker's registered address only (no reflection to an address named in the message).
// memberlist's own Ping would do, but waits its ProbeTimeout (250ms) for a dead host; this waits
// Config.VerifyTimeout.
const (
	probeAsk    = 'q' // probeAsk, nonce (8 bytes), the asker's name
	probeAnswer = 'a' // probeAnswer, nonce (8 bytes)
	probeNudge  = 'n' // probeNudge, 8 zero bytes: read the host list now (Nudge)
	probeTag    = 0xb7
)

// probe asks a member for an answer, twice at once (one lost datagram is not a death), and reports
// whether one came within VerifyTimeout.
func (m *Membership) probe(list *memberlist.Memberlist, mb Member) bool {
	ch := make(chan struct{}, 1)
	var nb [8]byte
	_, _ = rand.Read(nb[:]) // not guessable: a member cannot answer for a dead host it cannot hear
	nonce := binary.BigEndian.Uint64(nb[:])
	m.mu.Lock()
	m.probes[nonce] = ch
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.probes, nonce)
		m.mu.Unlock()
	}()
	msg := append(binary.BigEndian.AppendUint64([]byte{probeTag, probeAsk}, nonce), m.cfg.Name...)
	to := memberlist.Address{Addr: mb.Addr.String(), Name: mb.Name}
	for range 2 {
		_ = list.SendToAddress(to, msg)
	}
	select {
	case <-ch:
		return true
	case <-time.After(m.cfg.VerifyTimeout):
		return false
	}
}

// Nudge asks every other member to signal Changes now, so that its agent reads the host list from
// the controller at once (a host published a new WireGuard key). The message carries no data: what
// the members learn comes from the controller, gossip only says when to ask.
func (m *Membership) Nudge() {
	m.mu.Lock()
	list := m.list
	m.mu.Unlock()
	if list == nil {
		return
	}
	msg := make([]byte, 10)
	msg[0], msg[1] = probeTag, probeNudge
	for _, n := range list.Members() {
		if n.Name == m.cfg.Name {
			continue
		}
		for range 2 { // one lost datagram costs a heartbeat's wait
			_ = list.SendToAddress(memberlist.Address{Addr: n.Address(), Name: n.Name}, msg)
		}
	}
}

// handleProbe answers a probe, or records an answer; other user messages are ignored. It never blocks
// (memberlist calls it from its packet handler).
func (m *Membership) handleProbe(b []byte) {
	if len(b) < 10 || b[0] != probeTag {
		return
	}
	nonce := binary.BigEndian.Uint64(b[2:10])
	switch b[1] {
	case probeAsk:
		m.mu.Lock()
		to, ok := m.hosts[string(b[10:])]
		list := m.list
		m.mu.Unlock()
		if ok && list != nil {
			answer := binary.BigEndian.AppendUint64([]byte{probeTag, probeAnswer}, nonce)
			_ = list.SendToAddress(memberlist.Address{Addr: to.String(), Name: string(b[10:])}, answer)
		}
	case probeNudge:
		m.kick()
	case probeAnswer:
		m.mu.Lock()
		ch := m.probes[nonce]
		m.mu.Unlock()
		if ch != nil {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
