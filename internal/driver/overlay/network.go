package overlay

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// unreachable words a failed controller call for the user.
func unreachable(what string, err error) error {
	if errdefs.HTTPStatus(err) == 500 || errors.Is(err, errdefs.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		msg := strings.TrimSuffix(err.Error(), ": "+errdefs.ErrUnavailable.Error())
		return fmt.Errorf("%s: the controller cannot be reached: %s; overlay networks need the controller, while bridge, host and none networks keep working: %w", what, msg, errdefs.ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ambiguous tells whether a failed controller request may still have taken effect: no answer (the
// controller or the path to it down, a timeout) or an internal error, as opposed to a refusal.
func ambiguous(err error) bool {
	return errdefs.HTTPStatus(err) == 500 || errors.Is(err, errdefs.ErrUnavailable) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// Networks lists the overlay networks. With the controller unreachable it answers from the last known
// list, so that the agent keeps resolving network names (and bridge networks keep working).
func (d *Driver) Networks(ctx context.Context) ([]api.Network, error) {
	rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	nets, err := d.refreshNetworks(rctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.listErr = err
	if err == nil {
		return nets, nil
	}
	var out []api.Network
	for _, ns := range d.st.Networks {
		out = append(out, ns.Network)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ListError is why the last Networks answered from the state file rather than the controller (nil:
// it asked the controller): a network missing from that answer may exist all the same.
func (d *Driver) ListError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.listErr
}

// CreateNetwork creates an overlay network through the controller.
func (d *Driver) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	ctl, err := d.ready()
	if err != nil {
		return api.Network{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	out, err := ctl.CreateNetwork(rctx, n)
	if err != nil {
		return api.Network{}, unreachable(fmt.Sprintf("create overlay network %q", n.Name), err)
	}
	d.mu.Lock()
	if _, ok := d.st.Networks[out.Name]; !ok {
		d.st.Networks[out.Name] = &netState{Network: out}
	}
	d.mu.Unlock()
	return out, nil
}

// DeleteNetwork refuses: an overlay network belongs to the cluster, and a host's token may not delete
// it. ovctl sends the deletion to the controller with the admin token instead.
func (d *Driver) DeleteNetwork(ctx context.Context, name string) error {
	return fmt.Errorf("network %q is an overlay network of the cluster: delete it through the controller with the admin token (ovctl --controller URL --token TOKEN network rm %s): %w", name, name, errdefs.ErrUnauthorized)
}
