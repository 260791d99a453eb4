package overlay

import (
	"strings"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/vxlan"
)

// statusReporter is implemented by data planes that report what they programmed and what they left
// out (*vxlan.Driver); a Dataplane without it reports nothing.
type statusReporter interface {
	Status() vxlan.Status
}

// NetworkDataplane reports how this host's data plane carries the network, for ovctl network inspect:
// entries programmed, entries left out and why. Nil when the data plane does not report.
func (d *Driver) NetworkDataplane(network string) *api.NetworkDataplane {
	r, ok := d.dp.(statusReporter)
	if !ok {
		return nil
	}
	out := &api.NetworkDataplane{Host: d.cfg.Host}
	for _, n := range r.Status().Networks {
		if n.Name != network {
			continue
		}
		out.Active, out.Endpoints, out.Peers, out.VTEPs = n.Active, n.Endpoints, n.Peers, n.VTEPs
		out.ProblemsDetected, out.Error = n.ProblemsDetected, n.Error
		for _, p := range n.Problems {
			out.Problems = append(out.Problems, api.DataplaneProblem{Kind: p.Kind, Entry: p.Entry, Reason: p.Reason, Since: p.Since.UTC()})
		}
	}
	return out
}

// leftOut returns why the data plane left the container's endpoint on the network out ("" when it
// did not, or does not report).
func (d *Driver) leftOut(network, container string) string {
	r, ok := d.dp.(statusReporter)
	if !ok {
		return ""
	}
	for _, n := range r.Status().Networks {
		for _, p := range n.Problems {
			if n.Name == network && (p.Kind == vxlan.KindNetwork || p.Kind == vxlan.KindEndpoint && strings.HasPrefix(p.Entry, container+" ")) {
				return p.String()
			}
		}
	}
	return ""
}
