package client_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/errdefs"
)

// FuzzWatchStream: whatever a controller (or anything between) sends as a watch stream, the client's
// decoder never panics and never hangs; it delivers only events that are in the stream, in order; and
// when it reconnects it never resumes past the highest revision it delivered (resuming further would
// skip events). The first request gets body, every later one 404, which ends the watch.
func FuzzWatchStream(f *testing.F) {
	ep := `{"network":"n","host":"h1","container":"c1","ip":"10.0.0.2","mac":"02:00:0a:00:00:02","revision":7}`
	for _, s := range []string{
		`{"type":"snapshot","endpoints":[` + ep + `],"revision":7}` + "\n" + `{"type":"put","endpoint":` + ep + `,"revision":8}` + "\n",
		`{"type":"delete","endpoint":` + ep + `,"revision":9}` + "\n" + `{"type":"progress","revision":12}` + "\n",
		`{"type":"put","revision":-5}` + "\n" + `{"type":"put","revision":9223372036854775807}` + "\n",
		"{\"type\":\"put\"\n",
		"\n\n",
		`{"type":"snapshot","endpoints":null,"revision":3}{"type":"put"}` + "\n",
	} {
		f.Add([]byte(s), int64(0))
		f.Add([]byte(s), int64(5))
	}
	f.Fuzz(func(t *testing.T, body []byte, fromRev int64) {
		if fromRev < 0 {
			fromRev = -fromRev
		}
		var mu sync.Mutex
		var resumedAt []int64
		requests := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			requests++
			n := requests
			if n > 1 {
				rev, _ := strconv.ParseInt(r.URL.Query().Get("revision"), 10, 64)
				resumedAt = append(resumedAt, rev)
			}
			mu.Unlock()
			if n > 1 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				_ = json.NewEncoder(w).Encode(api.Error{Code: errdefs.Code(errdefs.ErrNotFound), Message: "network \"n\" is not defined"})
				return
			}
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body)
		}))
		defer srv.Close()
		c, err := client.New(client.Config{URL: srv.URL, Token: "t"})
		if err != nil {
			t.Fatal(err)
		}
		// The stream as the client must read it: one JSON event a line.
		var lines []api.EndpointEvent
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 64<<10), 256<<20)
		for sc.Scan() {
			var ev api.EndpointEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				break
			}
			lines = append(lines, ev)
		}
		var got []api.EndpointEvent
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = c.WatchEndpoints(ctx, "n", fromRev, func(ev api.EndpointEvent) error {
			got = append(got, ev)
			return nil
		})
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("WatchEndpoints = %v, want the 404 that ends it (stream %q)", err, body)
		}
		// Delivered events are a subsequence of the stream's events.
		i := 0
		maxRev := fromRev
		for _, ev := range got {
			for i < len(lines) && !reflect.DeepEqual(lines[i], ev) {
				i++
			}
			if i == len(lines) {
				t.Fatalf("delivered %+v, which is not (in that order) in the stream %q", ev, body)
			}
			i++
			maxRev = max(maxRev, ev.Revision)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rev := range resumedAt {
			if rev > maxRev {
				t.Fatalf("resumed at revision %d, past the highest revision delivered (%d): events in between would be skipped", rev, maxRev)
			}
		}
	})
}
