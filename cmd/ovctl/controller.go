package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/controller/client"
	"github.com/ovnet/ov/internal/errdefs"
)

// Defaults for reaching the controller when --controller and --token are not given.
const (
	defaultController = "http://127.0.0.1:7480"
	// defaultTokenFile is where a controller on this machine keeps its generated admin token.
	defaultTokenFile = "/var/lib/ov/controller/admin.token"
)

// controller returns a client of the controller named by the global flags.
func (g *globals) controller() (*client.Client, error) {
	url, tok := g.v.GetString("controller"), g.v.GetString("token")
	if url == "" {
		url = defaultController
	}
	if tok == "" {
		if b, err := os.ReadFile(defaultTokenFile); err == nil {
			tok = strings.TrimSpace(string(b))
		}
	}
	if tok == "" {
		return nil, fmt.Errorf("no controller token: give --token or OV_TOKEN (the admin token, in the controller's DATA_DIR/admin.token): %w", errdefs.ErrUnauthorized)
	}
	return client.New(client.Config{URL: url, Token: tok})
}

// controllerExplicit reports whether the user named a controller (flag or environment), so that
// failing to reach it is worth a warning where the local agent alone would do.
func (g *globals) controllerExplicit() bool {
	return g.v.IsSet("controller") || g.v.IsSet("token")
}

// createOverlay creates an overlay network through the controller.
func createOverlay(ctx context.Context, g *globals, n api.Network) error {
	c, err := g.controller()
	if err != nil {
		return err
	}
	out, err := c.CreateNetwork(ctx, n)
	if err != nil {
		return err
	}
	fmt.Println(out.ID)
	return nil
}

// allNetworks lists the agent's networks and the controller's overlay networks (those the agent does
// not list already). An unreachable controller is skipped, with a warning when it was named.
func (g *globals) allNetworks(ctx context.Context) ([]api.Network, error) {
	local, err := g.agent().Networks(ctx)
	agentErr := err
	if err != nil && !errors.Is(err, errdefs.ErrUnavailable) {
		return nil, err
	}
	seen := map[string]bool{}
	for _, n := range local {
		seen[n.Name] = true
	}
	c, cerr := g.controller()
	var cluster []api.Network
	if cerr == nil {
		cluster, cerr = c.ListNetworks(ctx)
	}
	if cerr != nil {
		if agentErr != nil {
			return nil, agentErr
		}
		if g.controllerExplicit() {
			fmt.Fprintln(os.Stderr, "ovctl: warning: overlay networks not listed:", cerr)
		}
		return local, nil
	}
	for _, n := range cluster {
		if !seen[n.Name] {
			local = append(local, n)
		}
	}
	return local, nil
}

// network finds a network on the agent, else on the controller.
func (g *globals) network(ctx context.Context, name string) (api.Network, error) {
	n, err := g.agent().Network(ctx, name)
	if err == nil || !(errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrUnavailable)) {
		return n, err
	}
	c, cerr := g.controller()
	if cerr != nil {
		return api.Network{}, err
	}
	if cn, cerr := c.GetNetwork(ctx, name); cerr == nil || !errors.Is(cerr, errdefs.ErrUnavailable) {
		return cn, cerr
	}
	return api.Network{}, err
}

// deleteNetwork removes a network from the agent, or, when the agent does not have it, from the
// controller.
func (g *globals) deleteNetwork(ctx context.Context, name string, force bool) error {
	// An overlay network belongs to the cluster: only the controller (with the admin token) deletes it.
	if n, nerr := g.agent().Network(ctx, name); nerr == nil && n.Driver == api.DriverOverlay {
		c, cerr := g.controller()
		if cerr != nil {
			return fmt.Errorf("network %q is an overlay network, deleted through the controller: %w", name, cerr)
		}
		return c.DeleteNetwork(ctx, name, force)
	}
	err := g.agent().DeleteNetwork(ctx, name)
	if err == nil || !(errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrUnavailable)) {
		return err
	}
	c, cerr := g.controller()
	if cerr != nil {
		return err
	}
	if cerr := c.DeleteNetwork(ctx, name, force); cerr == nil || !errors.Is(cerr, errdefs.ErrUnavailable) {
		return cerr
	}
	return err
}
