package controller

import (
	"context"
	"net/http"
	"time"

	"github.com/ovnet/ov/api"
)

// dataplaneTTL is how long a data plane report lives unless its agent renews it (agents renew every
// 10 s): the report of an agent that stopped goes away by itself.
const dataplaneTTL = 30 * time.Second

// putDataplane records which hosts the calling host finds unreachable on the data plane
// (api.DataplaneReport); a host reports only for itself.
func (c *Controller) putDataplane(w http.ResponseWriter, r *http.Request, p principal) error {
	name := r.PathValue("name")
	if err := p.need(false, name); err != nil {
		return err
	}
	var rep api.DataplaneReport
	if err := decode(r, &rep); err != nil {
		return err
	}
	if err := rep.Validate(); err != nil {
		return err
	}
	if err := c.st.PutDataplane(r.Context(), name, rep.Unreachable, dataplaneTTL); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// withDataplane fills in each host's data plane state from the other hosts' reports (those of hosts
// in the list: a removed host's report, until its lease ends, counts for nothing). Without the reports
// (etcd trouble) the field stays empty: unknown, not reachable.
func (c *Controller) withDataplane(ctx context.Context, hosts []api.Host) {
	from, err := c.st.ListDataplane(ctx)
	if err != nil {
		c.log.Warn("read the data plane reports", "err", err)
		return
	}
	known := map[string]bool{}
	for _, h := range hosts {
		known[h.Name] = true
	}
	for i := range hosts {
		hosts[i].Dataplane = api.DataplaneReachable
		var f []string
		for _, r := range from[hosts[i].Name] {
			if known[r] {
				f = append(f, r)
			}
		}
		if len(f) > 0 {
			hosts[i].Dataplane, hosts[i].UnreachableFrom = api.DataplaneUnreachable, f
		}
	}
}
