package controller

import (
	"fmt"
	"net/http"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// setEndpointNames replaces the DNS names of an endpoint (PUT .../endpoints/{host}/{container}/names):
// only the host that owns it (or the admin) may, with at most api.MaxEndpointNames DNS names; the
// agent empties them while the container is stopped and gives them back when it starts.
func (c *Controller) setEndpointNames(w http.ResponseWriter, r *http.Request, p principal) error {
	network, host, container := r.PathValue("name"), r.PathValue("host"), r.PathValue("container")
	if err := p.need(false, host); err != nil {
		return err
	}
	var req api.EndpointNames
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := api.ValidateEndpointNames(req.Names); err != nil {
		return fmt.Errorf("network %q, container %s on %s: %w", network, container, host, err)
	}
	if !api.ValidName(network) || !api.ValidName(host) {
		return fmt.Errorf("set endpoint names: network %q or host %q is not a valid name: %w", network, host, errdefs.ErrInvalidArgument)
	}
	ep, err := c.st.SetEndpointNames(r.Context(), network, host, container, req.Names)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ep)
	return nil
}
