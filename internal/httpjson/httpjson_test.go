package httpjson

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/errdefs"
)

var errUnreachable = errors.New("unreachable")

func testClient(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Client{
		HTTP:        srv.Client(),
		BaseURL:     srv.URL + "/v1",
		Peer:        "the test server",
		Unreachable: func(_ context.Context, err error) error { return fmt.Errorf("%v: %w", err, errUnreachable) },
		Header:      func(h http.Header, method, path string) { h.Set("X-Test", method+" "+path) },
	}
}

func TestDo(t *testing.T) {
	type msg struct {
		Name string `json:"name"`
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		in      any
		want    string
		wantErr error
		wantMsg string
	}{
		{name: "json in and out", in: msg{"x"}, want: "got x", handler: func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if r.URL.Path != "/v1/thing" || r.Header.Get("X-Test") != "POST /thing" || r.Header.Get("Content-Type") != "application/json" || string(b) != `{"name":"x"}` {
				http.Error(w, "bad request "+r.URL.Path+" "+string(b), http.StatusTeapot)
				return
			}
			fmt.Fprint(w, `{"name":"got x"}`)
		}},
		{name: "no content", handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }},
		{name: "error class", wantErr: errdefs.ErrNotFound, wantMsg: `network "x" not found`, handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"code":"not_found","message":"network \"x\" not found"}`)
		}},
		{name: "bad answer", wantErr: errdefs.ErrUnavailable, wantMsg: "bad answer from the test server", handler: func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"name":`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, tt.handler)
			var out msg
			err := c.Do(context.Background(), http.MethodPost, "/thing", tt.in, &out)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("got %v; want %q of class %v", err, tt.wantMsg, tt.wantErr)
				}
				return
			}
			if err != nil || out.Name != tt.want {
				t.Fatalf("got %+v, %v; want %q", out, err, tt.want)
			}
		})
	}
}

func TestUnreachableAndTimeout(t *testing.T) {
	c := testClient(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	c.Timeout = 50 * time.Millisecond
	if err := c.Do(context.Background(), http.MethodGet, "/slow", nil, nil); !errors.Is(err, errUnreachable) {
		t.Fatalf("a request past the timeout: got %v, want the Unreachable error", err)
	}
	c.BaseURL = "http://127.0.0.1:1"
	if _, err := c.Send(context.Background(), http.MethodGet, "/", nil); !errors.Is(err, errUnreachable) {
		t.Fatalf("no server: got %v, want the Unreachable error", err)
	}
}

func TestDecodeErrorHook(t *testing.T) {
	c := testClient(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nope", http.StatusBadRequest) })
	if err := c.Do(context.Background(), http.MethodGet, "/", nil, nil); err == nil || !strings.Contains(err.Error(), "400 Bad Request: nope") {
		t.Fatalf("default decoding: got %v", err)
	}
	c.DecodeError = func(resp *http.Response) error {
		return fmt.Errorf("hooked %d: %w", resp.StatusCode, errdefs.ErrInvalidArgument)
	}
	if err := c.Do(context.Background(), http.MethodGet, "/", nil, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("hook: got %v", err)
	}
}
