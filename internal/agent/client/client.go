// Package client is the Go client of the agent's local API (/v1/... on its unix socket), used by ovctl
// and by tests. Errors carry the errdefs class the agent answered with.
package client

import (
	"bufio"
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
	"github.com/ovnet/ov/internal/httpjson"
)

// DefaultSocket is where the agent listens by default.
const DefaultSocket = "/run/ov/agent.sock"

// Client talks to one agent.
type Client struct {
	hj httpjson.Client
}

// New returns a client of the agent listening on socket.
func New(socket string) *Client {
	return &Client{hj: httpjson.Client{
		HTTP:    &http.Client{Transport: api.UnixTransport(socket)},
		BaseURL: "http://agent/" + api.AgentAPIVersion,
		Peer:    "the agent at " + socket,
		Dial:    api.UnixDialer(socket),
		Unreachable: func(_ context.Context, err error) error {
			return fmt.Errorf("cannot reach the agent at %s (is ovagent running, and are you root?): %v: %w", socket, err, errdefs.ErrUnavailable)
		},
		DecodeError: decodeError,
	}}
}

// ExitCodeError is an error the agent attached an exit code to (126/127 when the command of a
// container could not be run).
type ExitCodeError struct {
	Code int
	Err  error
}

func (e *ExitCodeError) Error() string { return e.Err.Error() }
func (e *ExitCodeError) Unwrap() error { return e.Err }

// decodeError is api.DecodeError, wrapped in an ExitCodeError when the agent attached an exit code.
func decodeError(resp *http.Response) error {
	err := api.DecodeError(resp)
	if code, cerr := strconv.Atoi(resp.Header.Get("X-Ov-Exit-Code")); cerr == nil {
		return &ExitCodeError{Code: code, Err: err}
	}
	return err
}

// withQuery appends q to path.
func withQuery(path string, q url.Values) string {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return path
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	return c.hj.Do(ctx, method, withQuery(path, q), in, out)
}

// Version asks the agent who it is.
func (c *Client) Version(ctx context.Context) (api.Version, error) {
	var v api.Version
	err := c.do(ctx, http.MethodGet, "/version", nil, nil, &v)
	return v, err
}

// Create creates a container.
func (c *Client) Create(ctx context.Context, req api.ContainerCreate) (api.Container, error) {
	var out api.Container
	err := c.do(ctx, http.MethodPost, "/containers", nil, req, &out)
	return out, err
}

// Start starts a created container.
func (c *Client) Start(ctx context.Context, id string) (api.Container, error) {
	var out api.Container
	err := c.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/start", nil, nil, &out)
	return out, err
}

// Inspect returns one container.
func (c *Client) Inspect(ctx context.Context, id string) (api.Container, error) {
	var out api.Container
	err := c.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// List lists running containers, or all.
func (c *Client) List(ctx context.Context, all bool) ([]api.Container, error) {
	q := url.Values{}
	if all {
		q.Set("all", "1")
	}
	var out []api.Container
	err := c.do(ctx, http.MethodGet, "/containers", q, nil, &out)
	return out, err
}

// Stop stops a container, killing it after timeout (negative: the container's --stop-timeout).
func (c *Client) Stop(ctx context.Context, id string, timeout time.Duration) error {
	q := url.Values{}
	if timeout >= 0 {
		q.Set("timeout", strconv.Itoa(int(timeout/time.Second)))
	}
	return c.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/stop", q, nil, nil)
}

// Kill sends a signal (name or number; empty: KILL).
func (c *Client) Kill(ctx context.Context, id, signal string) error {
	q := url.Values{}
	if signal != "" {
		q.Set("signal", signal)
	}
	return c.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/kill", q, nil, nil)
}

// Remove removes a container (force: even a running one).
func (c *Client) Remove(ctx context.Context, id string, force bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	return c.do(ctx, http.MethodDelete, "/containers/"+url.PathEscape(id), q, nil, nil)
}

// Wait waits until the container exits (removed: until it is gone).
func (c *Client) Wait(ctx context.Context, id string, removed bool) (api.Exit, error) {
	q := url.Values{}
	if removed {
		q.Set("condition", "removed")
	}
	var out api.Exit
	err := c.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/wait", q, nil, &out)
	return out, err
}

// Resize sets the size of the container's terminal.
func (c *Client) Resize(ctx context.Context, id string, ws api.Winsize) error {
	return c.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/resize", nil, ws, nil)
}

// Attach opens the container's stream: frames of output (api.FrameStdout, FrameStderr) ending with
// a FrameExit; the caller writes FrameStdin, FrameCloseStdin and FrameResize frames.
func (c *Client) Attach(ctx context.Context, id string) (net.Conn, *bufio.Reader, error) {
	return c.hj.Upgrade(ctx, "/containers/"+url.PathEscape(id)+"/attach", nil)
}

// Exec runs a process in a container; the stream is like Attach's.
func (c *Client) Exec(ctx context.Context, id string, cfg api.ExecConfig) (net.Conn, *bufio.Reader, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, err
	}
	return c.hj.Upgrade(ctx, "/containers/"+url.PathEscape(id)+"/exec", b)
}

// Logs returns the container's log as a stream of frames.
func (c *Client) Logs(ctx context.Context, id string, follow bool, tail int) (io.ReadCloser, error) {
	resp, err := c.hj.Send(ctx, http.MethodGet, withQuery("/containers/"+url.PathEscape(id)+"/logs", api.LogsQuery(follow, tail)), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// LoadImages uploads a docker save or OCI archive.
func (c *Client) LoadImages(ctx context.Context, r io.Reader, size int64) ([]api.Image, error) {
	var out []api.Image
	err := c.hj.DoBody(ctx, http.MethodPost, "/images/load", r, size, &out)
	return out, err
}

// ImportImage uploads a rootfs tarball as image ref.
func (c *Client) ImportImage(ctx context.Context, r io.Reader, size int64, ref string) (api.Image, error) {
	var out api.Image
	err := c.hj.DoBody(ctx, http.MethodPost, withQuery("/images/import", url.Values{"ref": {ref}}), r, size, &out)
	return out, err
}

// Images lists the agent's images.
func (c *Client) Images(ctx context.Context) ([]api.Image, error) {
	var out []api.Image
	err := c.do(ctx, http.MethodGet, "/images", nil, nil, &out)
	return out, err
}

// RemoveImage removes an image or one of its tags.
func (c *Client) RemoveImage(ctx context.Context, ref string) (api.ImageRemoved, error) {
	var out api.ImageRemoved
	err := c.do(ctx, http.MethodDelete, "/images/"+ref, nil, nil, &out)
	return out, err
}

// Networks lists networks.
func (c *Client) Networks(ctx context.Context) ([]api.Network, error) {
	var out []api.Network
	err := c.do(ctx, http.MethodGet, "/networks", nil, nil, &out)
	return out, err
}

// Network returns one network.
func (c *Client) Network(ctx context.Context, name string) (api.Network, error) {
	var out api.Network
	err := c.do(ctx, http.MethodGet, "/networks/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

// CreateNetwork creates a network.
func (c *Client) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	var out api.Network
	err := c.do(ctx, http.MethodPost, "/networks", nil, n, &out)
	return out, err
}

// DeleteNetwork removes a network.
func (c *Client) DeleteNetwork(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/networks/"+url.PathEscape(name), nil, nil, nil)
}

// Connect attaches a container to a network.
func (c *Client) Connect(ctx context.Context, network string, req api.NetworkConnect) (api.Container, error) {
	var out api.Container
	err := c.do(ctx, http.MethodPost, "/networks/"+url.PathEscape(network)+"/connect", nil, req, &out)
	return out, err
}

// Disconnect detaches a container from a network.
func (c *Client) Disconnect(ctx context.Context, network string, req api.NetworkConnect) (api.Container, error) {
	var out api.Container
	err := c.do(ctx, http.MethodPost, "/networks/"+url.PathEscape(network)+"/disconnect", nil, req, &out)
	return out, err
}

// Image returns one image of the agent's store by reference or ID.
func (c *Client) Image(ctx context.Context, ref string) (api.Image, error) {
	var out api.Image
	err := c.do(ctx, http.MethodGet, "/images/"+ref, nil, nil, &out)
	return out, err
}

// PullImage asks the agent to pull req.Ref, telling each progress line to progress (may be nil).
func (c *Client) PullImage(ctx context.Context, req api.ImagePull, progress func(api.ImagePullEvent)) (api.Image, error) {
	last, err := c.imageStream(ctx, "/images/pull", req, progress)
	if err != nil || last.Image == nil {
		return api.Image{}, err
	}
	return *last.Image, nil
}

// PushImage asks the agent to push req.Ref and returns the manifest digest.
func (c *Client) PushImage(ctx context.Context, req api.ImagePull, progress func(api.ImagePullEvent)) (string, error) {
	last, err := c.imageStream(ctx, "/images/push", req, progress)
	return last.Digest, err
}

// imageStream reads a JSON-lines answer of pull or push up to its last line.
func (c *Client) imageStream(ctx context.Context, path string, req api.ImagePull, progress func(api.ImagePullEvent)) (api.ImagePullEvent, error) {
	resp, err := c.hj.Send(ctx, http.MethodPost, path, req)
	if err != nil {
		return api.ImagePullEvent{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev api.ImagePullEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return ev, ctx.Err()
			}
			return ev, fmt.Errorf("%s: the agent's answer ended early (%v): %w", path, err, errdefs.ErrUnavailable)
		}
		switch {
		case ev.Error != nil:
			return ev, errdefs.FromWire(ev.Error.Code, ev.Error.Message)
		case ev.Done:
			return ev, nil
		case progress != nil:
			progress(ev)
		}
	}
}

// TagImage gives image source the additional reference target.
func (c *Client) TagImage(ctx context.Context, source, target string) (api.Image, error) {
	var out api.Image
	err := c.do(ctx, http.MethodPost, "/images/tag", nil, api.ImageTag{Source: source, Target: target}, &out)
	return out, err
}

// Login has the agent check credentials against a registry.
func (c *Client) Login(ctx context.Context, auth api.RegistryAuth) error {
	return c.do(ctx, http.MethodPost, "/auth", nil, auth, nil)
}
