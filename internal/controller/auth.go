package controller

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
)

// Roles a token grants.
type role int

const (
	roleNone  role = iota
	roleAdmin      // everything
	roleJoin       // register a new host
	roleHost       // act for one host
)

// principal is who made a request.
type principal struct {
	role role
	host string // roleHost: the host the token belongs to
}

// hostTokenPrefix starts every host token: "ovh.<host>.<secret>". The host name in it says which
// record's hash to compare; the secret is what proves it.
const hostTokenPrefix = "ovh."

// NewHostToken returns a fresh token for host and its hash as stored.
func newHostToken(host string) (token, hash string) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	token = hostTokenPrefix + host + "." + hex.EncodeToString(b[:])
	return token, hashToken(token)
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// authenticate finds who r comes from, from its bearer token.
func (c *Controller) authenticate(ctx context.Context, r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return principal{}, fmt.Errorf("no token: send Authorization: Bearer <token> with the admin, join or host token: %w", errdefs.ErrUnauthorized)
	}
	if equal(tok, c.cfg.AdminToken) {
		return principal{role: roleAdmin}, nil
	}
	if ok, err := c.checkJoin(ctx, tok); ok || err != nil {
		return principal{role: roleJoin}, err
	}
	if rest, ok := strings.CutPrefix(tok, hostTokenPrefix); ok {
		if i := strings.LastIndexByte(rest, '.'); i > 0 {
			name := rest[:i]
			want := hashToken(tok)
			if hh, ok := c.cache.host(name); ok && equal(hh.TokenHash, want) {
				return principal{role: roleHost, host: name}, nil
			}
			// The cache may not have seen a fresh registration yet: ask etcd.
			if hh, err := c.st.GetHost(ctx, name); err == nil && equal(hh.TokenHash, want) {
				return principal{role: roleHost, host: name}, nil
			} else if err != nil && errdefs.HTTPStatus(err) == http.StatusServiceUnavailable {
				return principal{}, err
			}
		}
	}
	return principal{}, fmt.Errorf("the token is not valid for this cluster (wrong token, or the host was removed): %w", errdefs.ErrUnauthorized)
}

// allow checks that p may act; hosts only for themselves (host == "" means any host may read).
func (p principal) need(admin bool, host string) error {
	switch {
	case p.role == roleAdmin:
		return nil
	case admin:
		return fmt.Errorf("this needs the admin token: %w", errdefs.ErrUnauthorized)
	case p.role == roleHost && (host == "" || host == p.host):
		return nil
	case p.role == roleHost:
		return fmt.Errorf("the token of host %q may act only for that host, not for %q: %w", p.host, host, errdefs.ErrUnauthorized)
	}
	return fmt.Errorf("the join token may only register a new host: %w", errdefs.ErrUnauthorized)
}
