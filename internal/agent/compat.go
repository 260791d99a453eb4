package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/image"
)

// unknownImage is docker's answer for an image the host does not have, with the ways to get it.
func unknownImage(ref string) error {
	if t, err := image.NormalizeRef(ref); err == nil {
		ref = t
	}
	return errdefs.Message(errdefs.ErrNotFound, fmt.Sprintf("Unable to find image '%s' locally; load it with ovctl image load, import it with ovctl image import, or pull it with ovctl image pull", ref))
}

// networkContainers are this host's containers attached to network, by ID, as docker's network
// inspect lists them.
func (a *Agent) networkContainers(network string) map[string]api.NetworkContainer {
	out := map[string]api.NetworkContainer{}
	for _, c := range a.containerList() {
		rec := c.snapshot()
		for _, ep := range rec.Networks {
			if ep.Network != network {
				continue
			}
			nc := api.NetworkContainer{Name: rec.Name, EndpointID: endpointID(rec.ID, network), MacAddress: ep.MAC}
			if ep.IP != "" {
				nc.IPv4Address = fmt.Sprintf("%s/%d", ep.IP, ep.PrefixLen)
			}
			out[rec.ID] = nc
		}
	}
	return out
}

// endpointID names a container's endpoint on a network (64 hex digits, like docker's), the same for
// as long as the container stays attached.
func endpointID(containerID, network string) string {
	h := sha256.Sum256([]byte(containerID + "/" + network))
	return hex.EncodeToString(h[:])
}
