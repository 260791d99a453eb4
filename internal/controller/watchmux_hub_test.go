package controller

import (
	"fmt"
	"testing"

	"github.com/ovnet/ov/api"
)

// TestHubHostStream: one host stream's queue on several feeds gets each network's events, named,
// from the same frames as the networks' own streams; a revision ahead of the hub gets a snapshot (no
// watch of its own); a queue that falls behind on one network is cut and taken off every feed.
func TestHubHostStream(t *testing.T) {
	h := hubWith(t, 2)
	h.change("m", "10.1.0.2", &api.Endpoint{Network: "m", IP: "10.1.0.2", Host: "h", Container: "c"}, 11, true)
	own := subscribeT(t, h, 0) // a per-network stream of n
	drain(own)
	s := newSub()
	firstN, _, fromN, leaveN := h.join(s, "n", 10)
	firstM, _, fromM, leaveM := h.join(s, "m", 99) // ahead of the hub (at 11): a snapshot
	defer leaveN()
	defer leaveM()
	if len(firstN) != 0 || fromN != 10 {
		t.Fatalf("n from 10: first %d frames, from %d; want none missed, from 10", len(firstN), fromN)
	}
	if len(firstM) != 1 || firstM[0].ev.Type != api.EventSnapshot || firstM[0].ev.Network != "m" || fromM != 0 {
		t.Fatalf("m from 99 (ahead of the hub): %+v from %d, want m's snapshot from 0", firstM, fromM)
	}
	if _, _, fallbacks := h.stats(); fallbacks != 1 {
		t.Fatalf("fallbacks %d, want 1", fallbacks)
	}
	put(h, "10.0.0.9", 12)
	h.change("m", "10.1.0.2", nil, 13, true)
	_ = hubWatcher{h}.Progress(14)
	var got []string
	for _, f := range s.take() {
		got = append(got, fmt.Sprintf("%s %s@%d", f.ev.Network, f.ev.Type, f.ev.Revision))
	}
	if want := "[n put@12 m delete@13 m progress@14 n progress@14]"; fmt.Sprint(got) != want && fmt.Sprint(got) != "[n put@12 m delete@13 n progress@14 m progress@14]" {
		t.Fatalf("host stream got %v, want %s (in some order of the progress events)", got, want)
	}
	if o := own.s.take(); o[0] != h.feeds["n"].log[len(h.feeds["n"].log)-1] {
		t.Fatal("the per-network stream and the host stream got different frames for one event")
	}
	for i := range hubQueue + 1 {
		put(h, "10.0.4.1", int64(15+i))
	}
	select {
	case <-s.cut:
	default:
		t.Fatal("a host stream with a full queue was not cut")
	}
	h.mu.Lock()
	_, onN := h.feeds["n"].subs[s]
	h.mu.Unlock()
	leaveM()
	h.mu.Lock()
	_, onM := h.feeds["m"]
	h.mu.Unlock()
	if onN || onM {
		t.Fatalf("a cut host stream is still on feed n (%v) or m's empty feed is kept (%v)", onN, onM)
	}
}
