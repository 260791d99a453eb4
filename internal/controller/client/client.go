// Package client is the Go client of the controller API (docs/api.md), used by ovctl and ovagent.
// Errors carry the errdefs class the controller answered with (errors.Is(err, errdefs.ErrNotFound)),
// and a controller that cannot be reached is errdefs.ErrUnavailable.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/httpjson"
)

// Config says how to reach a controller.
type Config struct {
	// URL of the controller, e.g. https://10.0.0.1:7480. Required.
	URL string
	// Token is sent as Authorization: Bearer: the admin token (ovctl), the join token (an agent's first
	// registration) or a host token.
	Token string
	// TLS configures https (CA to trust, client certificate); nil uses the system roots.
	TLS *tls.Config
	// Timeout bounds each request (not watches). Default 30s.
	Timeout time.Duration
	// MaxConns is the number of idle keep-alive connections kept to the controller. Default 64.
	MaxConns int
}

// Client talks to one controller. It is safe for concurrent use.
type Client struct {
	cfg Config
	hj  httpjson.Client
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 64
	}
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("controller URL %q: write it as http://host:port or https://host:port: %w", cfg.URL, errdefs.ErrInvalidArgument)
	}
	tr := &http.Transport{
		Proxy:               nil, // the controller is never reached through a proxy
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     cfg.TLS,
		MaxIdleConns:        cfg.MaxConns,
		MaxIdleConnsPerHost: cfg.MaxConns,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		DisableCompression:  true, // the controller's answers are small JSON, never gzipped
	}
	c := &Client{cfg: cfg, hj: httpjson.Client{
		HTTP:    &http.Client{Transport: tr},
		BaseURL: u.String(),
		Peer:    "the controller",
		Timeout: cfg.Timeout,
		Unreachable: func(ctx context.Context, err error) error {
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				return err
			}
			return fmt.Errorf("controller %s is not reachable (%v); check the controller's address and that ovcontroller runs: %w", u, err, errdefs.ErrUnavailable)
		},
		DecodeError: decodeError,
	}}
	c.hj.Header = c.header
	return c, nil
}

// WithToken returns a client that shares c's connections but sends token (an agent switches to its
// host token after registering).
func (c *Client) WithToken(token string) *Client {
	cp := &Client{cfg: c.cfg, hj: c.hj}
	cp.cfg.Token = token
	cp.hj.Header = cp.header
	return cp
}

// do sends a request with a JSON body (in != nil) and decodes a JSON answer into out (out != nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.hj.Do(ctx, method, path, in, out)
}

// header adds the token and marks idempotent requests.
func (c *Client) header(h http.Header, method, path string) {
	if c.cfg.Token != "" {
		h.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	if !(method == http.MethodPost && path == "/v1/networks") {
		// Every other call is idempotent (allocation per owner, release, register, reconcile...):
		// let the transport resend it when a kept-alive connection turns out closed (controller
		// restarted). The empty value marks the request without sending a header.
		h["Idempotency-Key"] = nil
	}
}

// decodeError returns the API error an answer carries; an answer that is not an api.Error is
// ErrInvalidArgument when its status is 4xx, else ErrUnavailable.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e api.Error
	if json.Unmarshal(b, &e) != nil || e.Code == "" {
		class := errdefs.ErrUnavailable
		if resp.StatusCode/100 == 4 {
			class = errdefs.ErrInvalidArgument
		}
		return fmt.Errorf("%s %s: controller answered %s: %s: %w", resp.Request.Method, resp.Request.URL.Path, resp.Status, bytes.TrimSpace(b), class)
	}
	err := errdefs.FromWire(e.Code, e.Message)
	if n := resp.Header.Get(unknownNetworkHeader); n != "" && errors.Is(err, errdefs.ErrNotFound) {
		return &UnknownNetworkError{Network: n, Err: err} // a host watch naming a removed network
	}
	return err
}

func esc(s string) string { return url.PathEscape(s) }

// Health checks that the controller and its etcd answer.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/v1/health", nil, nil)
}

// CreateNetwork creates an overlay network; empty subnet and VNI are chosen by the controller.
func (c *Client) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	var out api.Network
	err := c.do(ctx, http.MethodPost, "/v1/networks", n, &out)
	return out, err
}

// GetNetwork reads one network.
func (c *Client) GetNetwork(ctx context.Context, name string) (api.Network, error) {
	var out api.Network
	err := c.do(ctx, http.MethodGet, "/v1/networks/"+esc(name), nil, &out)
	return out, err
}

// ListNetworks reads every network, sorted by name.
func (c *Client) ListNetworks(ctx context.Context) ([]api.Network, error) {
	var out []api.Network
	err := c.do(ctx, http.MethodGet, "/v1/networks", nil, &out)
	return out, err
}

// UpdateNetwork changes labels, MTU and internal; with n.Revision set it fails with ErrConflict when
// the network changed since.
func (c *Client) UpdateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	var out api.Network
	err := c.do(ctx, http.MethodPut, "/v1/networks/"+esc(n.Name), n, &out)
	return out, err
}

// DeleteNetwork removes a network; one with endpoints only when force.
func (c *Client) DeleteNetwork(ctx context.Context, name string, force bool) error {
	return c.do(ctx, http.MethodDelete, "/v1/networks/"+esc(name)+"?force="+strconv.FormatBool(force), nil, nil)
}

// RegisterHost registers a host or updates its address and labels. The answer to a first registration
// carries the host's token in Token: keep it, and use it (WithToken) from then on.
func (c *Client) RegisterHost(ctx context.Context, h api.Host) (api.Host, error) {
	var out api.Host
	err := c.do(ctx, http.MethodPost, "/v1/hosts", h, &out)
	return out, err
}

// RotateHostKey asks the host's agent for a new WireGuard key pair; with revoke, the published key is
// removed at once (admin).
func (c *Client) RotateHostKey(ctx context.Context, host string, revoke bool) (api.Host, error) {
	var out api.Host
	err := c.do(ctx, http.MethodPost, "/v1/hosts/"+esc(host)+"/rotate-key?revoke="+strconv.FormatBool(revoke), nil, &out)
	return out, err
}

// Heartbeat tells the controller the host is alive.
func (c *Client) Heartbeat(ctx context.Context, host string) (api.Host, error) {
	var out api.Host
	err := c.do(ctx, http.MethodPost, "/v1/hosts/"+esc(host)+"/heartbeat", nil, &out)
	return out, err
}

// ReportDataplane tells the controller which hosts this host finds unreachable on the data plane
// (api.DataplaneReport); an empty list clears the report.
func (c *Client) ReportDataplane(ctx context.Context, host string, unreachable []string) error {
	if unreachable == nil {
		unreachable = []string{}
	}
	return c.do(ctx, http.MethodPut, "/v1/hosts/"+esc(host)+"/dataplane", api.DataplaneReport{Unreachable: unreachable}, nil)
}

// GetHost reads one host with its state.
func (c *Client) GetHost(ctx context.Context, name string) (api.Host, error) {
	var out api.Host
	err := c.do(ctx, http.MethodGet, "/v1/hosts/"+esc(name), nil, &out)
	return out, err
}

// ListHosts reads every host with its state (alive or dead), sorted by name.
func (c *Client) ListHosts(ctx context.Context) ([]api.Host, error) {
	var out []api.Host
	err := c.do(ctx, http.MethodGet, "/v1/hosts", nil, &out)
	return out, err
}

// RemoveHost removes a host and releases every address it held.
func (c *Client) RemoveHost(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/hosts/"+esc(name), nil, nil)
}

// ResetToken (admin) revokes a host's token and lets its agent register again with the join token,
// once, keeping the host's record and the addresses its containers hold.
func (c *Client) ResetToken(ctx context.Context, name string) (api.Host, error) {
	var out api.Host
	err := c.do(ctx, http.MethodPost, "/v1/hosts/"+esc(name)+"/reset-token", nil, &out)
	return out, err
}

// HostEndpoints lists the allocations of a host in every network.
func (c *Client) HostEndpoints(ctx context.Context, host string) ([]api.Endpoint, error) {
	var out []api.Endpoint
	err := c.do(ctx, http.MethodGet, "/v1/hosts/"+esc(host)+"/endpoints", nil, &out)
	return out, err
}

// Allocate gives (ep.Network, ep.Host, ep.Container) an address: ep.IP if set, else the next free one.
// Asking again for the same owner returns the same endpoint.
func (c *Client) Allocate(ctx context.Context, ep api.Endpoint) (api.Endpoint, error) {
	var out api.Endpoint
	err := c.do(ctx, http.MethodPost, "/v1/networks/"+esc(ep.Network)+"/endpoints", ep, &out)
	return out, err
}

// Release frees the address of (network, host, container); releasing what is not held is not an error.
func (c *Client) Release(ctx context.Context, network, host, container string) error {
	return c.do(ctx, http.MethodDelete, "/v1/networks/"+esc(network)+"/endpoints/"+esc(host)+"/"+esc(container), nil, nil)
}

// SetEndpointNames replaces the DNS names of the endpoint (network, host, container) holds and returns
// the endpoint.
func (c *Client) SetEndpointNames(ctx context.Context, network, host, container string, names []string) (api.Endpoint, error) {
	var out api.Endpoint
	if names == nil {
		names = []string{}
	}
	err := c.do(ctx, http.MethodPut, "/v1/networks/"+esc(network)+"/endpoints/"+esc(host)+"/"+esc(container)+"/names", api.EndpointNames{Names: names}, &out)
	return out, err
}

// ListEndpoints reads a network's endpoints and the revision to resume a watch from.
func (c *Client) ListEndpoints(ctx context.Context, network string) ([]api.Endpoint, int64, error) {
	var out api.EndpointList
	err := c.do(ctx, http.MethodGet, "/v1/networks/"+esc(network)+"/endpoints", nil, &out)
	return out.Endpoints, out.Revision, err
}

// Reconcile reports the endpoints host really has; the controller releases the host's other
// allocations and returns them.
func (c *Client) Reconcile(ctx context.Context, host string, have []api.Endpoint) ([]api.Endpoint, error) {
	if have == nil {
		have = []api.Endpoint{}
	}
	var out api.ReconcileResponse
	err := c.do(ctx, http.MethodPost, "/v1/hosts/"+esc(host)+"/reconcile", api.ReconcileRequest{Endpoints: have}, &out)
	return out.Released, err
}

// WatchEndpoints streams the endpoints of network to fn: a snapshot (unless fromRev > 0 and the
// controller still has that history), then each change and periodic progress events. When the stream
// breaks (controller restart, network trouble) it reconnects by itself and resumes from the last
// revision it delivered in full, dropping the events of a half-delivered revision that fn already had:
// fn sees every event once, in order, even when one transaction made many events and the stream broke
// among them. A snapshot event means "replace everything"; it comes again, possibly at a lower
// revision, when the controller's store was compacted past or restored behind the watch. fromRev must
// be a revision fn had in full (see api.EndpointEvent.Last). It returns when ctx ends (ctx.Err()),
// when fn returns an error (that error), or on an answer that retrying cannot fix (unknown network,
// bad token, bad request); everything else is retried with backoff.
func (c *Client) WatchEndpoints(ctx context.Context, network string, fromRev int64, fn func(api.EndpointEvent) error) error {
	cur := cursor{rev: fromRev}
	backoff := 100 * time.Millisecond
	for {
		err := c.watchOnce(ctx, network, &cur, fn, &backoff)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr fnError
		if errors.As(err, &ferr) {
			return ferr.err
		}
		if err != nil && (errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrUnauthorized) || errors.Is(err, errdefs.ErrInvalidArgument)) {
			return err // retrying cannot fix these
		}
		if err := retryAfter(ctx, &backoff); err != nil {
			return err
		}
	}
}

type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// cursor is where a watch stands: rev was delivered in full; of revision part (0: none), the first
// n events were delivered. A resumed stream starts at rev+1 and so repeats those n events: skip
// counts how many of them are still to be dropped.
type cursor struct {
	rev     int64
	part    int64
	n, skip int
}

// resumeWithOldCursor, when set by a test, makes the watch resume from the revision of the last
// event it delivered, as it did before revisions were tracked in full: a transaction's events after
// a break are then lost. Tests set it to show that they catch that.
var resumeWithOldCursor = false

// next decides whether ev is delivered, and moves the cursor past it once it is.
func (c *cursor) next(ev api.EndpointEvent) (deliver bool) {
	change := ev.Type == api.EventPut || ev.Type == api.EventDelete
	if c.skip > 0 {
		switch {
		case change && ev.Revision == c.part:
			c.skip--
			return false // delivered before the stream broke
		case ev.Type == api.EventProgress && ev.Revision < c.part:
			// a heartbeat about revisions before: the repeated events may still follow
		default:
			c.skip = 0 // the stream went elsewhere (a snapshot, the revision gone): nothing to drop
		}
	}
	return true
}

// delivered moves the cursor past ev, which fn has applied.
func (c *cursor) delivered(ev api.EndpointEvent) {
	switch {
	case resumeWithOldCursor:
		c.rev = max(c.rev, ev.Revision)
	case ev.Type == api.EventSnapshot:
		c.rev, c.part, c.n = ev.Revision, 0, 0 // after a restore it goes back
	case ev.Type == api.EventPut || ev.Type == api.EventDelete:
		if c.part != 0 && ev.Revision > c.part {
			c.rev = c.part // a later revision: the earlier one was complete (controllers without Last)
		}
		if ev.Revision != c.part {
			c.part, c.n = ev.Revision, 0
		}
		c.n++
		if ev.Last {
			c.rev, c.part, c.n = max(c.rev, ev.Revision), 0, 0
		}
	default: // progress: everything up to its revision is complete
		if ev.Revision >= c.part {
			c.part, c.n = 0, 0
		}
		c.rev = max(c.rev, ev.Revision)
	}
}

func (c *Client) watchOnce(ctx context.Context, network string, cur *cursor, fn func(api.EndpointEvent) error, backoff *time.Duration) error {
	cur.skip = 0
	if cur.part != 0 {
		cur.skip = cur.n
	}
	path := fmt.Sprintf("/v1/networks/%s/endpoints?watch=1&revision=%d", esc(network), cur.rev)
	resp, err := c.hj.Send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var ev api.EndpointEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("watch network %q: bad event from the controller: %v: %w", network, err, errdefs.ErrUnavailable)
		}
		if !cur.next(ev) {
			continue
		}
		if err := fn(ev); err != nil {
			return fnError{err}
		}
		cur.delivered(ev)
		*backoff = 100 * time.Millisecond
	}
	return fmt.Errorf("watch network %q: stream ended (%v): %w", network, sc.Err(), errdefs.ErrUnavailable)
}

// GossipKeyring reads the cluster's gossip keyring (host token or admin token); the controller creates
// it when there is none yet.
func (c *Client) GossipKeyring(ctx context.Context) (api.GossipKeyring, error) {
	var out api.GossipKeyring
	err := c.do(ctx, http.MethodGet, "/v1/gossip/keyring", nil, &out)
	return out, err
}

// RotateGossipKeyring puts a fresh primary key in the gossip keyring, keeping the previous one as
// secondary (admin token), and returns the new keyring.
func (c *Client) RotateGossipKeyring(ctx context.Context) (api.GossipKeyring, error) {
	var out api.GossipKeyring
	err := c.do(ctx, http.MethodPost, "/v1/gossip/keyring/rotate", nil, &out)
	return out, err
}

// JoinToken reads the join token and its expiry (admin token).
func (c *Client) JoinToken(ctx context.Context) (api.JoinToken, error) {
	var out api.JoinToken
	err := c.do(ctx, http.MethodGet, "/v1/join-token", nil, &out)
	return out, err
}

// RotateJoinToken replaces the join token with a fresh one (admin token); ttl is a Go duration ("24h";
// "0": never expires; "": the controller's default). The old token stops working at once.
func (c *Client) RotateJoinToken(ctx context.Context, ttl string) (api.JoinToken, error) {
	var out api.JoinToken
	err := c.do(ctx, http.MethodPost, "/v1/join-token/rotate", api.JoinTokenRotate{TTL: ttl}, &out)
	return out, err
}

// retryAfter waits *backoff before a watch is opened again, then doubles it up to 5 s; it returns
// ctx's error if ctx ends first.
func retryAfter(ctx context.Context, backoff *time.Duration) error {
	t := time.NewTimer(*backoff)
	select {
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-t.C:
	}
	if *backoff < 5*time.Second {
		*backoff *= 2
	}
	return nil
}
