package controller

import (
	"context"
	"fmt"
	"testing"

	"github.com/ovnet/ov/api"
)

// hubWith returns a running hub holding the endpoints of network n at revision 10.
func hubWith(t *testing.T, n int) *hub {
	t.Helper()
	h := newHub()
	h.running.Store(true)
	eps := map[string]api.Endpoint{}
	for i := range n {
		ip := fmt.Sprintf("10.0.0.%d", i+2)
		eps[ip] = api.Endpoint{Network: "n", IP: ip, Host: "h", Container: ip}
	}
	h.reset(map[string]map[string]api.Endpoint{"n": eps}, 10)
	return h
}

func put(h *hub, ip string, rev int64) {
	h.change("n", ip, &api.Endpoint{Network: "n", IP: ip, Host: "h", Container: ip, Revision: rev}, rev, true)
}

func subscribeT(t *testing.T, h *hub, fromRev int64) subscription {
	t.Helper()
	s, ok, err := h.subscribe(context.Background(), "n", fromRev)
	if err != nil || !ok {
		t.Fatalf("subscribe from %d: ok %v, err %v", fromRev, ok, err)
	}
	t.Cleanup(s.cancel)
	return s
}

// drain returns the types and revisions of what a subscription holds now.
func drain(s subscription) []string {
	var out []string
	for _, f := range s.first {
		out = append(out, fmt.Sprintf("%s@%d", f.ev.Type, f.ev.Revision))
	}
	for _, f := range s.s.take() {
		out = append(out, fmt.Sprintf("%s@%d", f.ev.Type, f.ev.Revision))
	}
	return out
}

// TestHubFanOut: every stream of a network gets each event as the same frame, encoded once, and a
// new stream's snapshot comes from memory with the current endpoints.
func TestHubFanOut(t *testing.T) {
	h := hubWith(t, 3)
	var subs []subscription
	for range 50 {
		subs = append(subs, subscribeT(t, h, 0))
	}
	put(h, "10.0.0.9", 11)
	h.change("n", "10.0.0.2", nil, 12, true)
	frames, served, _ := h.stats()
	if frames != 3 || served != 50 { // one snapshot shared by the 50 streams, two events
		t.Fatalf("frames %d, streams served %d: want 3 frames for 50 streams", frames, served)
	}
	var first *frame
	for i, s := range subs {
		if got := drain(s); fmt.Sprint(got) != "[snapshot@10 put@11 delete@12]" {
			t.Fatalf("stream %d got %v", i, got)
		}
	}
	for i, s := range subs { // the same bytes for every stream
		if i == 0 {
			first = s.first[0]
		} else if s.first[0] != first {
			t.Fatal("streams got different snapshot frames: encoded more than once")
		}
	}
	snap := subscribeT(t, h, 0).first[0].ev
	if snap.Revision != 12 || len(snap.Endpoints) != 3 || snap.Endpoints[0].IP != "10.0.0.3" {
		t.Fatalf("snapshot at 12: %+v", snap)
	}
}

// TestHubResume: a stream resuming within the hub's history gets exactly the events it missed; one
// older than it gets a snapshot; one ahead of the hub is not served (it needs a watch of its own).
func TestHubResume(t *testing.T) {
	h := hubWith(t, 1)
	for i := range 5 {
		put(h, fmt.Sprintf("10.0.1.%d", i), int64(11+i))
	}
	if got := fmt.Sprint(drain(subscribeT(t, h, 13))); got != "[put@14 put@15]" {
		t.Fatalf("resume from 13: %s", got)
	}
	if got := fmt.Sprint(drain(subscribeT(t, h, 15))); got != "[]" {
		t.Fatalf("resume from 15 (up to date): %s", got)
	}
	if _, ok, _ := h.subscribe(context.Background(), "n", 16); ok {
		t.Fatal("a stream ahead of the hub was served from it")
	}
	for i := range hubLogEvents + 10 {
		put(h, "10.0.2.1", int64(100+i))
	}
	got := drain(subscribeT(t, h, 20))
	if len(got) != 1 || got[0] != fmt.Sprintf("snapshot@%d", 100+hubLogEvents+9) {
		t.Fatalf("resume from before the hub's history: %v, want one snapshot", got)
	}
}

// TestHubKeepsWholeRevisions: when the history is trimmed, a revision made of several changes goes
// whole, so a resume never gets half of one.
func TestHubKeepsWholeRevisions(t *testing.T) {
	h := hubWith(t, 0)
	h.change("n", "10.0.3.1", &api.Endpoint{Network: "n", IP: "10.0.3.1"}, 11, false)
	h.change("n", "10.0.3.2", &api.Endpoint{Network: "n", IP: "10.0.3.2"}, 11, true)
	for i := range hubLogEvents - 1 {
		put(h, "10.0.3.3", int64(12+i))
	}
	// 1,025 events: the two of revision 11 are dropped together
	h.mu.Lock()
	logFrom, n := h.feeds["n"].logFrom, len(h.feeds["n"].log)
	h.mu.Unlock()
	if logFrom != 11 || n != hubLogEvents-1 {
		t.Fatalf("history from %d with %d events: want from 11 with %d", logFrom, n, hubLogEvents-1)
	}
	if got := drain(subscribeT(t, h, 10)); got[0] != fmt.Sprintf("snapshot@%d", 12+hubLogEvents-2) {
		t.Fatalf("resume from 10: %v", got[:1])
	}
}

// TestHubCutsSlowStream: a stream that reads nothing is cut when its queue is full, and never holds
// back the hub or the other streams.
func TestHubCutsSlowStream(t *testing.T) {
	h := hubWith(t, 0)
	slow := subscribeT(t, h, 0)
	fast := subscribeT(t, h, 0)
	drain(fast)
	for i := range hubQueue + 1 {
		put(h, "10.0.4.1", int64(11+i))
		if i%1000 == 0 {
			drain(fast)
		}
	}
	select {
	case <-slow.s.cut:
	default:
		t.Fatal("a stream with a full queue was not cut")
	}
	select {
	case <-fast.s.cut:
		t.Fatal("a stream that reads was cut")
	default:
	}
}

// TestHubSharesSnapshotsAcrossOtherNetworksChanges: streams that open while other networks change
// get the same snapshot frame of a network that did not change (every agent reconnecting at once to
// a busy controller must not cost one copy of every snapshot per stream), and a change of the
// network itself makes a new one.
func TestHubSharesSnapshotsAcrossOtherNetworksChanges(t *testing.T) {
	h := hubWith(t, 500)
	var snaps []*frame
	for i := range 20 {
		s := newSub()
		first, _, _, leave := h.join(s, "n", 0)
		defer leave()
		if len(first) != 1 || first[0].ev.Type != api.EventSnapshot || len(first[0].ev.Endpoints) != 500 {
			t.Fatalf("stream %d: want one snapshot of 500 endpoints, got %d frames", i, len(first))
		}
		snaps = append(snaps, first[0])
		ip := fmt.Sprintf("10.9.0.%d", i+2) // another network changes between two streams
		h.change("other", ip, &api.Endpoint{Network: "other", IP: ip, Host: "h", Container: ip}, int64(11+i), true)
	}
	for i, f := range snaps {
		if f != snaps[0] {
			t.Fatalf("stream %d got a snapshot of its own (revision %d) although network n did not change: %d copies where one would do", i, f.ev.Revision, len(snaps))
		}
	}
	put(h, "10.0.1.1", 40)
	s := newSub()
	first, _, _, leave := h.join(s, "n", 0)
	defer leave()
	if first[0] == snaps[0] || len(first[0].ev.Endpoints) != 501 || first[0].ev.Revision != 40 {
		t.Fatalf("after a change of n: snapshot of %d endpoints at revision %d (shared with before: %v); want a new one of 501 at 40",
			len(first[0].ev.Endpoints), first[0].ev.Revision, first[0] == snaps[0])
	}
}
