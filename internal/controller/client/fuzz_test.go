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

const endType = "ov-fuzz-end"

var (
	endMarker = `{"type":"` + endType + `"}`
	errEnd    = errors.New("end marker")
)

// FuzzWatchStream: whatever a controller (or anything between) sends as a watch stream, the client's
// decoder never panics and never hangs; it delivers only events that are in the stream, in order; and
// when it reconnects it never resumes past the highest revision it delivered (resuming further would
// skip events). The first request gets body and then an end marker the callback stops at; every later
// request gets 404, which ends the watch. A stream the client gives up on reconnects after a 100ms
// backoff; to keep fuzzing fast, three times in four the test cancels the watch instead, after the
// client has had 20ms to read the stream.
func FuzzWatchStream(f *testing.F) {
	ep := `{"network":"n","host":"h1","container":"c1","ip":"10.0.0.2","mac":"02:00:0a:00:00:02","revision":7}`
	for _, s := range []string{
		`{"type":"snapshot","endpoints":[` + ep + `],"revision":7}` + "\n" + `{"type":"put","endpoint":` + ep + `,"revision":8}` + "\n",
		`{"type":"delete","endpoint":` + ep + `,"revision":9}` + "\n" + `{"type":"progress","revision":12}` + "\n",
		`{"type":"put","revision":-5}` + "\n" + `{"type":"put","revision":9223372036854775807}` + "\n",
		"{\"type\":\"put\"\n",
		"\n\n",
		`{"type":"snapshot","endpoints":null,"revision":3}{"type":"put"}` + "\n",
		// one transaction's events: the last one marked
		`{"type":"delete","endpoint":` + ep + `,"revision":9}` + "\n" + `{"type":"delete","endpoint":` + ep + `,"revision":9,"last":true}` + "\n" + `{"type":"put","endpoint":` + ep + `,"revision":11}` + "\n",
		`{"type":"snapshot","endpoints":[],"revision":20}` + "\n" + `{"type":"snapshot","endpoints":[],"revision":4}` + "\n" + `{"type":"progress","revision":3}` + "\n",
	} {
		f.Add([]byte(s), int64(0))
		f.Add([]byte(s), int64(5))
	}
	f.Fuzz(func(t *testing.T, body []byte, fromRev int64) {
		if fromRev < 0 {
			fromRev = -fromRev
		}
		stream := body
		if len(stream) > 0 && stream[len(stream)-1] != '\n' {
			stream = append(append([]byte(nil), stream...), '\n')
		}
		stream = append(append([]byte(nil), stream...), endMarker+"\n"...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
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
			_, _ = w.Write(stream)
			if fromRev%4 != 0 {
				time.AfterFunc(20*time.Millisecond, cancel)
			}
		}))
		defer srv.Close()
		c, err := client.New(client.Config{URL: srv.URL, Token: "t"})
		if err != nil {
			t.Fatal(err)
		}
		// The stream as the client must read it: one JSON event a line.
		var lines []api.EndpointEvent
		sc := bufio.NewScanner(bytes.NewReader(stream))
		sc.Buffer(make([]byte, 64<<10), 256<<20)
		for sc.Scan() {
			var ev api.EndpointEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				break
			}
			lines = append(lines, ev)
		}
		var got []api.EndpointEvent
		err = c.WatchEndpoints(ctx, "n", fromRev, func(ev api.EndpointEvent) error {
			got = append(got, ev)
			if ev.Type == endType {
				return errEnd
			}
			return nil
		})
		if !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errEnd) && !(errors.Is(err, context.Canceled) && fromRev%4 != 0) {
			t.Fatalf("WatchEndpoints = %v, want the end marker, the 404 that ends it or our cancel (stream %q)", err, stream)
		}
		// Delivered events are a subsequence of the stream's events.
		i := 0
		maxRev := fromRev
		for _, ev := range got {
			for i < len(lines) && !reflect.DeepEqual(lines[i], ev) {
				i++
			}
			if i == len(lines) {
				t.Fatalf("delivered %+v, which is not (in that order) in the stream %q", ev, stream)
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
