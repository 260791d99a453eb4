package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// ErrNoHostWatch is WatchHost's answer when the controller does not serve the host watch stream (it
// is older than this client): watch each network with WatchEndpoints instead.
var ErrNoHostWatch = errors.New("the controller does not serve the host watch stream GET /v1/endpoints (it is older than this client); watch each network on its own stream")

// UnknownNetworkError is WatchHost's answer when a network it was asked to watch does not exist
// (removed): watch without it.
type UnknownNetworkError struct {
	Network string
	Err     error // the controller's answer (errdefs.ErrNotFound)
}

func (e *UnknownNetworkError) Error() string { return e.Err.Error() }
func (e *UnknownNetworkError) Unwrap() error { return e.Err }

// unknownNetworkHeader is the header in which the controller names the unknown network of a 404
// answer to a host watch.
const unknownNetworkHeader = "Ov-Unknown-Network"

// WatchHost streams the endpoints of several networks on one stream (GET /v1/endpoints?watch=true):
// revs gives, per network, the revision fn has in full (0: start with a snapshot). Per network it
// behaves as WatchEndpoints: a snapshot or the missed events, a progress event once the network
// caught up, then each change and periodic progress events; fn gets each network's events once, in
// order, across reconnects (each network resumes from its own revision). A network removed from the
// cluster gets one api.EventRemoved event and no more. It returns when ctx ends (ctx.Err()), when fn
// returns an error (that error), when every network was removed (nil), or on an answer that retrying
// cannot fix: ErrNoHostWatch (an older controller), *UnknownNetworkError (a network that does not
// exist), a bad token or request. Everything else is retried with backoff.
func (c *Client) WatchHost(ctx context.Context, revs map[string]int64, fn func(network string, ev api.EndpointEvent) error) error {
	if len(revs) == 0 {
		return fmt.Errorf("host watch: no networks to watch: %w", errdefs.ErrInvalidArgument)
	}
	curs := make(map[string]*cursor, len(revs))
	for n, rev := range revs {
		curs[n] = &cursor{rev: rev}
	}
	backoff := 100 * time.Millisecond
	for {
		err := c.watchHostOnce(ctx, curs, fn, &backoff)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr fnError
		if errors.As(err, &ferr) {
			return ferr.err
		}
		if len(curs) == 0 {
			return nil // every network was removed
		}
		if err != nil && (errors.Is(err, ErrNoHostWatch) || errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrUnauthorized) || errors.Is(err, errdefs.ErrInvalidArgument)) {
			return err // retrying cannot fix these
		}
		if err := retryAfter(ctx, &backoff); err != nil {
			return err
		}
	}
}

// hostWatchPath is the path of a host watch from the cursors, networks in name order.
func hostWatchPath(curs map[string]*cursor) string {
	names := make([]string, 0, len(curs))
	for n := range curs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(url.QueryEscape(n))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(curs[n].rev, 10))
	}
	return "/v1/endpoints?watch=1&networks=" + b.String()
}

func (c *Client) watchHostOnce(ctx context.Context, curs map[string]*cursor, fn func(string, api.EndpointEvent) error, backoff *time.Duration) error {
	for _, cur := range curs {
		cur.skip = 0
		if cur.part != 0 {
			cur.skip = cur.n
		}
	}
	resp, err := c.hj.Send(ctx, http.MethodGet, hostWatchPath(curs), nil)
	if err != nil {
		var unknown *UnknownNetworkError
		if errors.Is(err, errdefs.ErrNotFound) && !errors.As(err, &unknown) {
			return fmt.Errorf("%w (%v)", ErrNoHostWatch, err) // the route itself is unknown
		}
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var ev api.EndpointEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("host watch: bad event from the controller: %v: %w", err, errdefs.ErrUnavailable)
		}
		cur := curs[ev.Network]
		if cur == nil {
			continue // not a network of this watch (any more)
		}
		if ev.Type == api.EventRemoved {
			delete(curs, ev.Network)
			if err := fn(ev.Network, ev); err != nil {
				return fnError{err}
			}
			continue
		}
		if !cur.next(ev) {
			continue
		}
		if err := fn(ev.Network, ev); err != nil {
			return fnError{err}
		}
		cur.delivered(ev)
		*backoff = 100 * time.Millisecond
	}
	if len(curs) == 0 {
		return nil
	}
	return fmt.Errorf("host watch: stream ended (%v): %w", sc.Err(), errdefs.ErrUnavailable)
}
