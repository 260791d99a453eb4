package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
)

// TestWatchDropsRepeatedEvents: streams that break inside a revision are resumed from the last
// complete revision, and the events the server repeats are dropped, also when a heartbeat comes
// among them; a snapshot instead means the repeated events are not coming.
func TestWatchDropsRepeatedEvents(t *testing.T) {
	ev := func(typ string, rev int64, ip string, last bool) string {
		l := ""
		if last {
			l = `,"last":true`
		}
		return fmt.Sprintf(`{"type":%q,"endpoint":{"network":"n","host":"h","container":%q,"ip":%q},"revision":%d%s}`, typ, ip, ip, rev, l)
	}
	for _, c := range []struct {
		name    string
		streams []string // one per connection
		resumes []string // the revision each reconnect asks for
		want    string
	}{
		{
			name: "break inside a revision, heartbeat among the repeats",
			streams: []string{
				`{"type":"snapshot","endpoints":[],"revision":5}` + "\n" + ev("put", 6, "a", false) + "\n" + ev("put", 6, "b", false),
				ev("put", 6, "a", false) + "\n" + `{"type":"progress","revision":5}` + "\n" + ev("put", 6, "b", false) + "\n" + ev("put", 6, "c", true) + "\n" + ev("delete", 7, "a", true),
			},
			resumes: []string{"5"},
			want:    "snapshot@5 put a@6 put b@6 progress@5 put c@6 delete a@7",
		},
		{
			name: "controller without last: a later revision completes the earlier",
			streams: []string{
				`{"type":"snapshot","endpoints":[],"revision":5}` + "\n" + ev("put", 6, "a", false) + "\n" + ev("put", 7, "b", false),
				ev("put", 7, "b", false) + "\n" + ev("put", 7, "c", false),
			},
			resumes: []string{"6"},
			want:    "snapshot@5 put a@6 put b@7 put c@7",
		},
		{
			name: "the history is gone: a snapshot, nothing dropped after it",
			streams: []string{
				`{"type":"snapshot","endpoints":[],"revision":5}` + "\n" + ev("put", 6, "a", false),
				`{"type":"snapshot","endpoints":[],"revision":3}` + "\n" + ev("put", 6, "a", true),
			},
			resumes: []string{"5"},
			want:    "snapshot@5 put a@6 snapshot@3 put a@6",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var resumes []string
			n := 0
			url := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				i := n
				n++
				if i > 0 {
					resumes = append(resumes, r.URL.Query().Get("revision"))
				}
				mu.Unlock()
				if i >= len(c.streams) {
					w.WriteHeader(http.StatusNotFound)
					_, _ = w.Write([]byte(`{"code":"not_found","message":"end of the test"}`))
					return
				}
				w.Header().Set("Content-Type", "application/x-ndjson")
				_, _ = w.Write([]byte(c.streams[i] + "\n"))
			}))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var got []string
			err := newClient(t, url, "t").WatchEndpoints(ctx, "n", 0, func(e api.EndpointEvent) error {
				s := e.Type
				if e.Endpoint != nil {
					s += " " + e.Endpoint.IP
				}
				got = append(got, fmt.Sprintf("%s@%d", s, e.Revision))
				return nil
			})
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WatchEndpoints = %v, want the 404 that ends the test", err)
			}
			if g := strings.Join(got, " "); g != c.want {
				t.Fatalf("delivered %q, want %q", g, c.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if g, w := strings.Join(resumes[:len(c.resumes)], " "), strings.Join(c.resumes, " "); g != w {
				t.Fatalf("resumed at %q, want %q", g, w)
			}
		})
	}
}
