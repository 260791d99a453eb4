package controller

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/ovnet/ov/internal/controller/store"
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

// hostTokenPrefix starts every host token: "ovh.<host>.<nonce>.<mac>", mac = HMAC-SHA256 of
// "ovh.<host>.<nonce>" under the cluster's host-token key (secret "hostkey", held in memory by every
// controller). The host name says which record's hash to compare; the MAC lets a controller tell a
// token some controller minted from a forged one without asking etcd. Tokens minted before the key
// existed ("ovh.<host>.<secret>") still work: their hash is in the host record.
const hostTokenPrefix = "ovh."

// checkForgery is always true; the attack tests turn it off to show that without the MAC check every
// invalid host token costs an etcd read.
var checkForgery = true

// hostKeySecret names the secret holding the host-token key (32 random bytes, hex).
const hostKeySecret = "hostkey"

// newHostToken returns a fresh token for host, signed with key, and its hash as stored.
func newHostToken(host string, key []byte) (token, hash string) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	body := hostTokenPrefix + host + "." + hex.EncodeToString(b[:])
	token = body + "." + tokenMAC(key, body)
	return token, hashToken(token)
}

func tokenMAC(key []byte, body string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// signedHost returns the host a token names when its MAC is right under key ("" otherwise).
func signedHost(tok string, key []byte) string {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 || len(key) == 0 || !hmac.Equal([]byte(tok[i+1:]), []byte(tokenMAC(key, tok[:i]))) {
		return ""
	}
	rest := strings.TrimPrefix(tok[:i], hostTokenPrefix)
	j := strings.LastIndexByte(rest, '.')
	if j <= 0 {
		return ""
	}
	return rest[:j]
}

// hostNames are the host names a host token may carry (after its prefix): what precedes the secret
// (tokens minted before the host-token key), or what precedes the nonce and the MAC (signed ones).
func hostNames(rest string) []string {
	var out []string
	for i, k := len(rest), 0; k < 2; k++ {
		if i = strings.LastIndexByte(rest[:i], '.'); i <= 0 {
			break
		}
		out = append(out, rest[:i])
	}
	return out
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// hostKey returns the host-token key: from the cache, else from etcd, creating it when there is none
// (one conditional write).
func (c *Controller) hostKey(ctx context.Context) ([]byte, error) {
	s, ok := c.cache.secret(hostKeySecret)
	if !ok {
		var err error
		s, err = c.st.GetSecret(ctx, hostKeySecret)
		if errors.Is(err, errdefs.ErrNotFound) {
			var b [32]byte
			_, _ = rand.Read(b[:])
			s, _, err = c.st.CreateSecret(ctx, hostKeySecret, []byte(hex.EncodeToString(b[:])))
		}
		if err != nil {
			return nil, err
		}
		c.cache.learnSecret(hostKeySecret, s)
	}
	key, err := hex.DecodeString(string(s.Value))
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("the host-token key in etcd is corrupt: %w", errdefs.ErrUnavailable)
	}
	return key, nil
}

// authenticate finds who r comes from, from its bearer token. Once the cache has its first view of
// hosts and secrets, a token that is none of the cluster's is refused without a request to etcd: the
// admin token is in the configuration, the join token and the host-token key in the cache, and a host
// token is either in the cache or carries a valid MAC (only then may etcd be asked: the host may have
// registered through another controller a moment ago, or have been removed).
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
	invalid := fmt.Errorf("the token is not valid for this cluster (wrong token, or the host was removed): %w", errdefs.ErrUnauthorized)
	rest, ok := strings.CutPrefix(tok, hostTokenPrefix)
	if !ok {
		return principal{}, invalid
	}
	want := hashToken(tok)
	names := hostNames(rest)
	for _, n := range names {
		if hh, ok := c.cache.host(n); ok && equal(hh.TokenHash, want) {
			return principal{role: roleHost, host: n}, nil
		}
	}
	if checkForgery && c.cache.hasSynced(store.KindHost) && c.cache.hasSynced(store.KindSecret) {
		key, err := c.hostKey(ctx) // from the cache, but for a moment at the cluster's first start
		if err != nil {
			return principal{}, err
		}
		n := signedHost(tok, key)
		if n == "" {
			return principal{}, invalid // forged, or unknown to a cache that knows every host: etcd is not asked
		}
		names = []string{n}
	}
	for _, n := range names {
		hh, err := c.st.GetHost(ctx, n)
		if err == nil && equal(hh.TokenHash, want) {
			return principal{role: roleHost, host: n}, nil
		}
		if err != nil && errdefs.HTTPStatus(err) == http.StatusServiceUnavailable {
			return principal{}, err
		}
	}
	return principal{}, invalid
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
