package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// Client talks to one shim over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client of the shim listening on socket.
func NewClient(socket string) *Client {
	return &Client{socket: socket, hc: &http.Client{Transport: UnixTransport(socket)}}
}

// UnixTransport is an HTTP transport whose every request goes to the unix socket at path.
func UnixTransport(path string) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
}

// DecodeError turns a non-2xx answer into an error of the class its body names.
func DecodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e api.Error
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return errdefs.FromWire(e.Code, e.Message)
	}
	return fmt.Errorf("%s %s: %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, bytes.TrimSpace(b))
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://shim"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("shim %s: %v: %w", c.socket, err, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return DecodeError(resp)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// State returns the container's state.
func (c *Client) State(ctx context.Context) (api.ContainerState, error) {
	var st api.ContainerState
	err := c.do(ctx, http.MethodGet, "/state", nil, &st)
	return st, err
}

// Start starts the created container.
func (c *Client) Start(ctx context.Context) (api.ContainerState, error) {
	var st api.ContainerState
	err := c.do(ctx, http.MethodPost, "/start", nil, &st)
	return st, err
}

// Kill sends signal sig to the container's init.
func (c *Client) Kill(ctx context.Context, sig int) error {
	return c.do(ctx, http.MethodPost, "/kill?signal="+strconv.Itoa(sig), nil, nil)
}

// Wait blocks until the container has exited (or ctx ends) and returns its final state.
func (c *Client) Wait(ctx context.Context) (api.ContainerState, error) {
	var st api.ContainerState
	err := c.do(ctx, http.MethodGet, "/wait", nil, &st)
	return st, err
}

// Resize sets the size of the container's terminal.
func (c *Client) Resize(ctx context.Context, ws Winsize) error {
	return c.do(ctx, http.MethodPost, "/resize", ws, nil)
}

// Delete removes the container from the runtime (force: kill it first if it runs); the shim exits.
func (c *Client) Delete(ctx context.Context, force bool) (api.ContainerState, error) {
	var st api.ContainerState
	q := ""
	if force {
		q = "?force=1"
	}
	err := c.do(ctx, http.MethodPost, "/delete"+q, nil, &st)
	return st, err
}

// Attach opens a stream of the container's live output (frames) that takes stdin frames.
func (c *Client) Attach(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	return Upgrade(ctx, c.dial, "/attach", nil)
}

// Exec runs a process in the container; the stream carries its stdio and ends with its exit.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (net.Conn, *bufio.Reader, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	return Upgrade(ctx, c.dial, "/exec", b)
}

// Logs returns the log as a stream of frames; with follow it goes on until the container exits.
func (c *Client) Logs(ctx context.Context, follow bool, tail int) (io.ReadCloser, error) {
	q := url.Values{}
	if follow {
		q.Set("follow", "1")
	}
	if tail >= 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://shim/logs?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("shim %s: %v: %w", c.socket, err, errdefs.ErrUnavailable)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, DecodeError(resp)
	}
	return resp.Body, nil
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return nil, fmt.Errorf("shim %s: %v: %w", c.socket, err, errdefs.ErrUnavailable)
	}
	return conn, nil
}

// Upgrade sends POST path (with a JSON body) on a new connection asking to switch to an ov-stream and
// returns the connection and its buffered reader once the server answered 101.
func Upgrade(ctx context.Context, dial func(context.Context) (net.Conn, error), path string, body []byte) (net.Conn, *bufio.Reader, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequest(http.MethodPost, "http://ov"+path, bytes.NewReader(body))
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
		return nil, nil, DecodeError(resp)
	}
	return conn, br, nil
}
