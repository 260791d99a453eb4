package controller

import (
	"net/http"
	"slices"
	"strings"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/store"
)

// hostListForHost answers a host's GET /v1/hosts from this controller's cache of the host records,
// with no etcd read: every agent reads the list (names and underlay addresses: its VTEPs and gossip
// seeds) at registration, on gossip changes and every 30 s, so N hosts cost N^2 / 30 s of host records
// sent; read from etcd (hosts, liveness keys, data plane reports: three range reads over every host)
// that is what made the embedded etcd stop answering at 1,000 simulated hosts (cmd/ovbench-scale,
// docs/scale.md). An agent uses no more than the names, addresses and labels, so the answer leaves
// out State, LastSeen and Dataplane, which need the reads; admins (ovctl node ls) get them all. It
// reports false, and the caller reads etcd, until the cache has its first snapshot of the hosts.
func (c *Controller) hostListForHost(w http.ResponseWriter, p principal) bool {
	if p.role != roleHost || !c.cache.hasSynced(store.KindHost) {
		return false
	}
	c.cache.mu.Lock()
	out := make([]api.Host, 0, len(c.cache.hosts))
	for _, h := range c.cache.hosts {
		v := h.Host
		v.Token, v.State, v.Labels = "", "", h.EffectiveLabels()
		out = append(out, v)
	}
	c.cache.mu.Unlock()
	slices.SortFunc(out, func(a, b api.Host) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, out)
	return true
}
