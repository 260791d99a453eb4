package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/ovnet/ov/internal/errdefs"
)

// UnixDialer returns a dial function that connects to the unix socket at path.
func UnixDialer(path string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// UnixTransport is an HTTP transport whose every request goes to the unix socket at path.
func UnixTransport(path string) *http.Transport {
	dial := UnixDialer(path)
	return &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
}

// DecodeError turns a non-2xx answer into an error of the class its body (an Error) names; a body
// that is not an Error becomes an error quoting the status and the body.
func DecodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e Error
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return errdefs.FromWire(e.Code, e.Message)
	}
	return fmt.Errorf("%s %s: %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, bytes.TrimSpace(b))
}
