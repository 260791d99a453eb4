package httpjson

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// Client sends requests to one HTTP server. Its fields are set once, before first use; it is then
// safe for concurrent use.
type Client struct {
	// HTTP sends the requests. Required.
	HTTP *http.Client
	// BaseURL prefixes every path, e.g. "http://agent/v1" or "https://10.0.0.1:7480". Required.
	BaseURL string
	// Peer names the server in errors about its answers, e.g. "the controller".
	Peer string
	// Timeout bounds each Do and DoBody call (not Send, whose caller reads the answer); 0: none.
	Timeout time.Duration
	// Unreachable turns the error of a request that got no answer into the error returned. Required.
	Unreachable func(ctx context.Context, err error) error
	// DecodeError turns an answer other than 2xx into the error returned; nil: api.DecodeError.
	DecodeError func(resp *http.Response) error
	// Header, when set, adds headers to each request (authorization, idempotency).
	Header func(h http.Header, method, path string)
	// Dial opens the connection of an Upgrade. Required for Upgrade only.
	Dial func(ctx context.Context) (net.Conn, error)
}

// Do sends method path with in as its JSON body (none when in is nil) and decodes the JSON answer
// into out (nothing when out is nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	return c.do(ctx, method, path, body, 0, in != nil, out)
}

// DoBody is Do with a raw body of size bytes (size <= 0: unknown), for uploads.
func (c *Client) DoBody(ctx context.Context, method, path string, body io.Reader, size int64, out any) error {
	return c.do(ctx, method, path, body, size, false, out)
}

// Send sends method path with in as its JSON body (none when in is nil) and returns the 2xx answer
// for the caller to read (a stream) and close.
func (c *Client) Send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	return c.send(ctx, method, path, body, 0, in != nil)
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, size int64, isJSON bool, out any) error {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	resp, err := c.send(ctx, method, path, body, size, isJSON)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	b := bufs.Get().(*bytes.Buffer)
	defer func() {
		if b.Cap() <= 64<<10 { // one huge answer must not stay pinned
			b.Reset()
			bufs.Put(b)
		}
	}()
	// Read to the end (the connection goes back to the pool at once), then decode.
	_, err = b.ReadFrom(resp.Body)
	if err == nil {
		err = json.Unmarshal(b.Bytes(), out)
	}
	if err != nil {
		return fmt.Errorf("%s %s: bad answer from %s: %v: %w", method, path, c.Peer, err, errdefs.ErrUnavailable)
	}
	return nil
}

// bufs holds the buffers answers are read into.
var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (c *Client) send(ctx context.Context, method, path string, body io.Reader, size int64, isJSON bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v: %w", method, path, err, errdefs.ErrInvalidArgument)
	}
	if size > 0 {
		req.ContentLength = size
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Header != nil {
		c.Header(req.Header, method, path)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, c.Unreachable(ctx, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	if c.DecodeError != nil {
		return nil, c.DecodeError(resp)
	}
	return nil, api.DecodeError(resp)
}

// Upgrade sends POST path with a JSON body on a new connection, asking to switch to an ov-stream
// (api.ReadFrame, api.FrameWriter), and returns the connection and its buffered reader once the
// server answered 101. Any other answer comes back as api.DecodeError's error.
func (c *Client) Upgrade(ctx context.Context, path string, body []byte) (net.Conn, *bufio.Reader, error) {
	conn, err := c.Dial(ctx)
	if err != nil {
		return nil, nil, c.Unreachable(ctx, err)
	}
	req, err := http.NewRequest(http.MethodPost, c.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "ov-stream")
	req.Header.Set("Content-Type", "application/json")
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		defer resp.Body.Close()
		return nil, nil, api.DecodeError(resp)
	}
	return conn, br, nil
}
