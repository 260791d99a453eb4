package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/errdefs"
)

// joinSecret names the secret holding the join token (joinRecord as JSON). etcd holds the token
// itself, not a hash, so that any controller can show it to an admin: etcd is reachable only with
// the controller's credentials, and whoever can read it holds the whole cluster anyway.
const joinSecret = "join"

// joinRecord is the current join token, when it stops working, and a hash of the token it replaced
// (to tell a rotated-away token from a wrong one).
type joinRecord struct {
	Token        string    `json:"token"`
	Expires      time.Time `json:"expires,omitempty"` // zero: never
	Rotated      time.Time `json:"rotated,omitempty"` // when Token replaced the previous one
	PreviousHash string    `json:"previousHash,omitempty"`
}

func decodeJoin(s store.Secret) (joinRecord, error) {
	var j joinRecord
	if err := json.Unmarshal(s.Value, &j); err != nil || len(j.Token) < 16 {
		return joinRecord{}, fmt.Errorf("the join token in etcd is corrupt (%v); make a new one with ovctl node join-token --rotate: %w", err, errdefs.ErrUnavailable)
	}
	return j, nil
}

func newJoinToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// joinToken returns the current join record: from the cache, or etcd while the cache has not seen it;
// when there is none yet it is created from the configured token (one conditional write).
func (c *Controller) joinToken(ctx context.Context) (joinRecord, error) {
	if s, ok := c.cache.secret(joinSecret); ok {
		return decodeJoin(s)
	}
	s, err := c.st.GetSecret(ctx, joinSecret)
	if errors.Is(err, errdefs.ErrNotFound) {
		j := joinRecord{Token: c.cfg.JoinToken}
		if c.cfg.JoinTokenTTL > 0 {
			j.Expires = time.Now().UTC().Add(c.cfg.JoinTokenTTL).Truncate(time.Second)
		}
		b, _ := json.Marshal(j)
		var created bool
		if s, created, err = c.st.CreateSecret(ctx, joinSecret, b); err == nil && created {
			c.log.Info("join token stored in etcd", "expires", j.Expires)
		}
	}
	if err != nil {
		return joinRecord{}, err
	}
	c.cache.learnSecret(joinSecret, s)
	return decodeJoin(s)
}

// checkJoin tells whether tok is the join token: (true, nil) when it is and works; an error that
// says why when it is the current one expired or a rotated-away one; (false, nil) otherwise.
func (c *Controller) checkJoin(ctx context.Context, tok string) (bool, error) {
	j, err := c.joinToken(ctx)
	if err != nil {
		return false, err
	}
	switch {
	case equal(tok, j.Token) && !j.Expires.IsZero() && time.Now().After(j.Expires):
		return false, fmt.Errorf("join token expired at %s; get a new one with ovctl node join-token --rotate: %w", j.Expires.Format(time.RFC3339), errdefs.ErrUnauthorized)
	case equal(tok, j.Token):
		return true, nil
	case j.PreviousHash != "" && equal(hashToken(tok), j.PreviousHash):
		return false, fmt.Errorf("this join token was replaced at %s (rotated); get the current one with ovctl node join-token: %w", j.Rotated.Format(time.RFC3339), errdefs.ErrUnauthorized)
	}
	return false, nil
}

// RotateJoinToken replaces the join token with a fresh one that works for ttl (0: never; < 0: the
// configured --join-token-ttl). The replaced token stops working at once.
func (c *Controller) RotateJoinToken(ctx context.Context, ttl time.Duration) (api.JoinToken, error) {
	if ttl < 0 {
		ttl = c.cfg.JoinTokenTTL
	}
	if _, err := c.joinToken(ctx); err != nil { // make sure one exists
		return api.JoinToken{}, err
	}
	for attempt := 0; attempt < 16; attempt++ {
		s, err := c.st.GetSecret(ctx, joinSecret)
		if err != nil {
			return api.JoinToken{}, err
		}
		old, _ := decodeJoin(s)
		now := time.Now().UTC().Truncate(time.Second)
		next := joinRecord{Token: newJoinToken(), Rotated: now}
		if old.Token != "" {
			next.PreviousHash = hashToken(old.Token)
		}
		if ttl > 0 {
			next.Expires = now.Add(ttl)
		}
		b, _ := json.Marshal(next)
		ns, err := c.st.UpdateSecret(ctx, joinSecret, b, s.Revision)
		if errors.Is(err, errdefs.ErrConflict) {
			continue
		}
		if err != nil {
			return api.JoinToken{}, err
		}
		c.cache.learnSecret(joinSecret, ns)
		c.log.Info("join token rotated", "expires", next.Expires)
		return api.JoinToken{Token: next.Token, Expires: next.Expires}, nil
	}
	return api.JoinToken{}, fmt.Errorf("rotate the join token: it keeps changing; retry: %w", errdefs.ErrConflict)
}

func (c *Controller) getJoinToken(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(true, ""); err != nil {
		return err
	}
	j, err := c.joinToken(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, api.JoinToken{Token: j.Token, Expires: j.Expires})
	return nil
}

func (c *Controller) rotateJoinToken(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(true, ""); err != nil {
		return err
	}
	var req api.JoinTokenRotate
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	ttl := time.Duration(-1)
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < 0 {
			return fmt.Errorf("rotate the join token: ttl %q is not a duration such as 24h or 30m (0: never expires): %w", req.TTL, errdefs.ErrInvalidArgument)
		}
		ttl = d
	}
	out, err := c.RotateJoinToken(r.Context(), ttl)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
	return nil
}
