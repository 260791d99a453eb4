package membership

import (
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovnet/ov/internal/membership/membershiptest"
	"github.com/ovnet/ov/internal/testutil"
)

// The attacks on gossip, each run twice: against members as ov runs them (the attack fails), and
// against members with the one protection that stops it turned off (the attack succeeds: the test can
// see it, so it would fail if the protection went away).

// intruder is a plain memberlist node, as an attacker on the underlay runs one: no ov code, an
// optional key, any name.
func intruder(t *testing.T, name string, port int, key []byte) *memberlist.Memberlist {
	t.Helper()
	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	mc.BindAddr, mc.AdvertiseAddr = "127.0.0.1", "127.0.0.1"
	mc.BindPort, mc.AdvertisePort = port, port
	mc.ProbeInterval, mc.ProbeTimeout = 200*time.Millisecond, 100*time.Millisecond
	mc.GossipInterval = 50 * time.Millisecond
	mc.SecretKey = key
	mc.Logger = log.New(io.Discard, "", 0)
	if testing.Verbose() {
		mc.Logger = nil
		mc.LogOutput = nil
	}
	list, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = list.Shutdown() })
	return list
}

func names(list *memberlist.Memberlist) []string {
	var out []string
	for _, n := range list.Members() {
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}

func memberNames(m *Membership) []string {
	var out []string
	for _, mb := range m.Members() {
		out = append(out, mb.Name)
	}
	return out
}

// protections lists each run of an attack: ov's members, then the members without the protection.
func protections(off func(*Membership)) []struct {
	name      string
	mod       func(*Membership)
	protected bool
} {
	return []struct {
		name      string
		mod       func(*Membership)
		protected bool
	}{{"protected", nil, true}, {"protection off", off, false}}
}

// TestKeylessNodeCannotJoin: a node without the cluster's key, even one using a registered host's
// name and address, never becomes a member: its join fails and no member lists it.
func TestKeylessNodeCannotJoin(t *testing.T) {
	for _, p := range protections(func(m *Membership) { m.unsafe.clearText = true }) {
		t.Run(p.name, func(t *testing.T) {
			cl := newCluster(t, "host1", "host2", "host3") // host3 registered, its agent not running
			a := startNodeWith(t, cl, "host1", "192.0.2.1", p.mod)
			b := startNodeWith(t, cl, "host2", "192.0.2.2", p.mod)
			testutil.Eventually(t, 10*time.Second, func() error { return expect(a.m, map[string]string{"host2": "alive vtep=192.0.2.2"}) })
			evil := intruder(t, "host3", cl.port("host3"), nil)
			_, joinErr := evil.Join([]string{a.m.Addr()})
			time.Sleep(2 * time.Second) // gossip rounds, push/pull and rejoins towards host3's address
			got := fmt.Sprint(memberNames(a.m), memberNames(b.m), names(evil))
			joined := slices.Contains(memberNames(a.m), "host3") || slices.Contains(memberNames(b.m), "host3") || len(evil.Members()) > 1
			if p.protected && joined {
				t.Fatalf("a node without the key joined (join error %v): members %s", joinErr, got)
			}
			if !p.protected && !joined {
				t.Fatalf("without the keyring the keyless node should have joined (the attack this test guards against): members %s", got)
			}
		})
	}
}

// TestUnregisteredNodeIsRefused: a node holding the key (a compromised member) that gossips under an
// unregistered name, or under a registered name from another address, is refused: no member's table
// lists it, so the table cannot grow without bound.
func TestUnregisteredNodeIsRefused(t *testing.T) {
	for _, p := range protections(func(m *Membership) { m.unsafe.anyMember = true }) {
		t.Run(p.name, func(t *testing.T) {
			cl := newCluster(t, "host1", "host2", "host3")
			a := startNodeWith(t, cl, "host1", "192.0.2.1", p.mod)
			b := startNodeWith(t, cl, "host2", "192.0.2.2", p.mod)
			testutil.Eventually(t, 10*time.Second, func() error { return expect(b.m, map[string]string{"host1": "alive vtep=192.0.2.1"}) })
			rogue := intruder(t, "rogue", freePort(t), testKey)
			impostor := intruder(t, "host3", freePort(t), testKey) // host3's name, not host3's address
			_, _ = rogue.Join([]string{a.m.Addr()})
			_, _ = impostor.Join([]string{b.m.Addr()})
			time.Sleep(2 * time.Second)
			want := []string{"host1", "host2"}
			ok := slices.Equal(memberNames(a.m), want) && slices.Equal(memberNames(b.m), want)
			if p.protected && !ok {
				t.Fatalf("unregistered nodes became members: host1 sees %v, host2 sees %v", memberNames(a.m), memberNames(b.m))
			}
			if !p.protected && ok {
				t.Fatalf("without the host check the rogue nodes should have been members: host1 sees %v", memberNames(a.m))
			}
		})
	}
}

// deadClaimAttack has the attacker send claims that host2 is dead to host1, every 50ms for 3s, with
// ever higher incarnations, and reports whether host1 ever took host2 for dead.
func deadClaimAttack(t *testing.T, key []byte, mod func(*Membership)) bool {
	t.Helper()
	cl := newCluster(t, "host1", "host2")
	a := startNodeWith(t, cl, "host1", "192.0.2.1", mod)
	startNodeWith(t, cl, "host2", "192.0.2.2", mod)
	testutil.Eventually(t, 10*time.Second, func() error { return expect(a.m, map[string]string{"host2": "alive vtep=192.0.2.2"}) })
	conn, err := net.Dial("udp", a.m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	seenDead := false
	for i := range 60 {
		if _, err := conn.Write(membershiptest.DeadClaim("host2", "evil", uint32(1000+i*10), key)); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			time.Sleep(10 * time.Millisecond)
			if !a.m.Alive("host2") {
				seenDead = true
			}
		}
	}
	return seenDead
}

// TestStrangerDeadClaimChangesNothing: dead claims about a live host sent in clear by a stranger on the
// underlay are dropped: the host stays alive. Two protections stop it (the keyring drops the claim;
// the direct probe would refute it), so the unprotected run turns both off.
func TestStrangerDeadClaimChangesNothing(t *testing.T) {
	for _, p := range protections(func(m *Membership) { m.unsafe.clearText, m.unsafe.trustDeadClaims = true, true }) {
		t.Run(p.name, func(t *testing.T) {
			dead := deadClaimAttack(t, nil, p.mod)
			if p.protected && dead {
				t.Fatal("a stranger's dead claim made host1 take the live host2 for dead")
			}
			if !p.protected && !dead {
				t.Fatal("without keyring and probe the stranger's claim should have made host2 dead (the attack)")
			}
		})
	}
}

// TestRogueMemberDeadClaimChangesNothing: dead claims about a live host from a member holding the key
// (a compromised host) reach memberlist, but a direct probe finds the host answering: it stays alive.
func TestRogueMemberDeadClaimChangesNothing(t *testing.T) {
	for _, p := range protections(func(m *Membership) { m.unsafe.trustDeadClaims = true }) {
		t.Run(p.name, func(t *testing.T) {
			dead := deadClaimAttack(t, testKey, p.mod)
			if p.protected && dead {
				t.Fatal("a rogue member's dead claim made host1 take the live host2 for dead")
			}
			if !p.protected && !dead {
				t.Fatal("without the direct probe the rogue member's claim should have made host2 dead (the attack)")
			}
		})
	}
}

// TestKeyRotationKeepsMembers: the keyring rotates (a new primary, the old kept, then removed) with the
// hosts learning it at different times; nobody is ever taken for dead, and afterwards a node holding
// only the old key cannot join.
func TestKeyRotationKeepsMembers(t *testing.T) {
	cl := newCluster(t, "host1", "host2", "host3")
	var nodes []*node
	for i, h := range cl {
		nodes = append(nodes, startNodeWith(t, cl, h.Name, fmt.Sprintf("192.0.2.%d", i+1), func(m *Membership) { m.cfg.KeyGrace = 700 * time.Millisecond }))
	}
	all := map[string]string{"host1": "alive vtep=192.0.2.1", "host2": "alive vtep=192.0.2.2", "host3": "alive vtep=192.0.2.3"}
	for _, n := range nodes {
		testutil.Eventually(t, 10*time.Second, func() error { return expect(n.m, all) })
	}
	newKey := []byte("fedcba9876543210fedcba9876543210")
	stop := make(chan struct{})
	watched := make(chan error, 1)
	go func() { // every member alive on every member, all along
		for {
			select {
			case <-stop:
				watched <- nil
				return
			case <-time.After(10 * time.Millisecond):
			}
			for _, n := range nodes {
				if err := expect(n.m, all); err != nil {
					watched <- err
					return
				}
			}
		}
	}()
	for _, n := range nodes { // learnt 400ms apart: within the grace
		if err := n.m.SetKeyring([][]byte{newKey, testKey}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
	}
	time.Sleep(time.Second)
	for _, n := range nodes {
		if err := n.m.SetKeyring([][]byte{newKey}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	if err := <-watched; err != nil {
		t.Fatalf("during the rotation: %v", err)
	}
	old := intruder(t, "host9", freePort(t), testKey)
	_, _ = old.Join([]string{nodes[0].m.Addr()})
	time.Sleep(time.Second)
	if got := names(old); len(got) > 1 {
		t.Fatalf("a node with the removed key still talks to the cluster: it sees %v", got)
	}
}
