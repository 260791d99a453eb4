package controller

import (
	"testing"

	"github.com/ovnet/ov/api"
)

// A resumed watch tells its client when it has caught up (the agent's name service waits for that
// before it answers NXDOMAIN after a restart): at once when it had everything, else right after the
// event that completes the network's latest revision at connect time; a fresh watch (a snapshot) and
// later events get no extra progress event.
func TestCatchUpProgress(t *testing.T) {
	put := func(rev int64, last bool) api.EndpointEvent {
		return api.EndpointEvent{Type: api.EventPut, Revision: rev, Last: last}
	}
	k := catchUp{target: 10, fromRev: 10}
	if p, ok := k.atOpen(); !ok || p.Type != api.EventProgress || p.Revision != 10 {
		t.Errorf("a client with every event: opening event %+v %v, want progress at 10", p, ok)
	}
	if _, ok := k.after(put(11, true), 11); ok {
		t.Errorf("a second catch-up event after the first")
	}

	k = catchUp{target: 12, fromRev: 9}
	if _, ok := k.atOpen(); ok {
		t.Errorf("a client 3 revisions behind was told at open that it has caught up")
	}
	for _, step := range []struct {
		ev   api.EndpointEvent
		last int64
		want bool
	}{
		{put(10, true), 10, false},
		{put(12, false), 10, false}, // half of revision 12 sent
		{put(12, true), 12, true},
		{put(13, true), 13, false},
	} {
		p, ok := k.after(step.ev, step.last)
		if ok != step.want || ok && (p.Type != api.EventProgress || p.Revision != step.last) {
			t.Errorf("after %+v (last %d): %+v %v, want progress %v", step.ev, step.last, p, ok, step.want)
		}
	}

	k = catchUp{target: 5, fromRev: 0}
	if _, ok := k.atOpen(); ok {
		t.Errorf("a fresh watch (snapshot first) got an opening progress event")
	}
	if _, ok := k.after(api.EndpointEvent{Type: api.EventSnapshot, Revision: 5}, 5); ok {
		t.Errorf("a snapshot got a progress event after it")
	}
}
