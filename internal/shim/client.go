package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/httpjson"
)

// Client talks to one shim over its unix socket.
type Client struct {
	hj httpjson.Client
}

// NewClient returns a client of the shim listening on socket.
func NewClient(socket string) *Client {
	return &Client{hj: httpjson.Client{
		HTTP:    &http.Client{Transport: api.UnixTransport(socket)},
		BaseURL: "http://shim",
		Peer:    "shim " + socket,
		Dial:    api.UnixDialer(socket),
		Unreachable: func(_ context.Context, err error) error {
			return fmt.Errorf("shim %s: %v: %w", socket, err, errdefs.ErrUnavailable)
		},
	}}
}

// State returns the container's state.
func (c *Client) State(ctx context.Context) (api.ContainerState, error) {
	var st api.ContainerState
	err := c.hj.Do(ctx, http.MethodGet, "/state", nil, &st)
	return st, err
}

// Start starts the created container.
func (c *Client) Start(ctx context.Context) (api.ContainerState, error) {
	var st api.ContainerState
	err := c.hj.Do(ctx, http.MethodPost, "/start", nil, &st)
	return st, err
}

// Kill sends signal sig to the container's init.
func (c *Client) Kill(ctx context.Context, sig int) error {
	return c.hj.Do(ctx, http.MethodPost, "/kill?signal="+strconv.Itoa(sig), nil, nil)
}

// Wait blocks until the container has exited (or ctx ends) and returns its final state.
func (c *Client) Wait(ctx context.Context) (api.ContainerState, error) {
	var st api.ContainerState
	err := c.hj.Do(ctx, http.MethodGet, "/wait", nil, &st)
	return st, err
}

// Resize sets the size of the container's terminal.
func (c *Client) Resize(ctx context.Context, ws api.Winsize) error {
	return c.hj.Do(ctx, http.MethodPost, "/resize", ws, nil)
}

// Delete removes the container from the runtime (force: kill it first if it runs); the shim exits.
func (c *Client) Delete(ctx context.Context, force bool) (api.ContainerState, error) {
	var st api.ContainerState
	q := ""
	if force {
		q = "?force=1"
	}
	err := c.hj.Do(ctx, http.MethodPost, "/delete"+q, nil, &st)
	return st, err
}

// Attach opens a stream of the container's live output (frames) that takes stdin frames.
func (c *Client) Attach(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	return c.hj.Upgrade(ctx, "/attach", nil)
}

// Exec runs a process in the container; the stream carries its stdio and ends with its exit.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (net.Conn, *bufio.Reader, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	return c.hj.Upgrade(ctx, "/exec", b)
}

// Logs returns the log as a stream of frames; with follow it goes on until the container exits.
func (c *Client) Logs(ctx context.Context, follow bool, tail int) (io.ReadCloser, error) {
	resp, err := c.hj.Send(ctx, http.MethodGet, "/logs?"+api.LogsQuery(follow, tail).Encode(), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
