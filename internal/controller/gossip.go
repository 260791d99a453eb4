package controller

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
	"github.com/ovnet/ov/internal/errdefs"
)

// gossipSecret names the secret holding the gossip keyring (api.GossipKeyring as JSON).
const gossipSecret = "gossip"

// maxGossipKeys is how many keys a keyring keeps: the primary and the one before it, so that agents
// that have not refetched yet still understand the new primary's senders and vice versa. Rotating
// twice drops a leaked key.
const maxGossipKeys = 2

func newGossipKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

func decodeKeyring(s store.Secret) (api.GossipKeyring, error) {
	var kr api.GossipKeyring
	if err := json.Unmarshal(s.Value, &kr); err != nil || len(kr.Keys) == 0 {
		return api.GossipKeyring{}, fmt.Errorf("gossip keyring in etcd is corrupt (%v); rotate it with ovctl node gossip-key rotate: %w", err, errdefs.ErrUnavailable)
	}
	return kr, nil
}

// GossipKeyring returns the cluster's gossip keyring, creating it (one conditional write; of several
// controllers racing, one wins and all answer its keyring) when there is none yet.
func (c *Controller) GossipKeyring(ctx context.Context) (api.GossipKeyring, error) {
	if s, ok := c.cache.secret(gossipSecret); ok {
		return decodeKeyring(s)
	}
	s, err := c.st.GetSecret(ctx, gossipSecret)
	if errors.Is(err, errdefs.ErrNotFound) {
		b, _ := json.Marshal(api.GossipKeyring{Keys: []string{newGossipKey()}, Version: 1})
		var created bool
		if s, created, err = c.st.CreateSecret(ctx, gossipSecret, b); err == nil && created {
			c.log.Info("gossip keyring created", "version", 1)
		}
	}
	if err != nil {
		return api.GossipKeyring{}, err
	}
	c.cache.learnSecret(gossipSecret, s)
	return decodeKeyring(s)
}

// RotateGossipKeyring puts a fresh primary key in front of the keyring and keeps the previous primary
// as secondary (maxGossipKeys in all); the version grows by one.
func (c *Controller) RotateGossipKeyring(ctx context.Context) (api.GossipKeyring, error) {
	if _, err := c.GossipKeyring(ctx); err != nil { // make sure one exists
		return api.GossipKeyring{}, err
	}
	for attempt := 0; attempt < 16; attempt++ {
		s, err := c.st.GetSecret(ctx, gossipSecret)
		if err != nil {
			return api.GossipKeyring{}, err
		}
		kr, err := decodeKeyring(s)
		if err != nil {
			kr = api.GossipKeyring{Version: kr.Version} // a corrupt keyring is replaced whole
		}
		keys := append([]string{newGossipKey()}, kr.Keys...)
		if len(keys) > maxGossipKeys {
			keys = keys[:maxGossipKeys]
		}
		next := api.GossipKeyring{Keys: keys, Version: kr.Version + 1}
		b, _ := json.Marshal(next)
		ns, err := c.st.UpdateSecret(ctx, gossipSecret, b, s.Revision)
		if errors.Is(err, errdefs.ErrConflict) {
			continue
		}
		if err != nil {
			return api.GossipKeyring{}, err
		}
		c.cache.learnSecret(gossipSecret, ns)
		c.log.Info("gossip keyring rotated", "version", next.Version, "keys", len(next.Keys))
		return next, nil
	}
	return api.GossipKeyring{}, fmt.Errorf("rotate the gossip keyring: it keeps changing; retry: %w", errdefs.ErrConflict)
}

// gossipVersion is the keyring version as the cache knows it (0: not known yet).
func (c *Controller) gossipVersion() int64 {
	s, ok := c.cache.secret(gossipSecret)
	if !ok {
		return 0
	}
	kr, err := decodeKeyring(s)
	if err != nil {
		return 0
	}
	return kr.Version
}

func (c *Controller) getGossipKeyring(w http.ResponseWriter, r *http.Request, p principal) error {
	if p.role != roleAdmin && p.role != roleHost {
		return fmt.Errorf("the gossip keyring is given only to registered hosts (host token) and admins: %w", errdefs.ErrUnauthorized)
	}
	kr, err := c.GossipKeyring(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, kr)
	return nil
}

func (c *Controller) rotateGossipKeyring(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.need(true, ""); err != nil {
		return err
	}
	kr, err := c.RotateGossipKeyring(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, kr)
	return nil
}
