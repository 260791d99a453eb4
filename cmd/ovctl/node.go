package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"

	"github.com/spf13/cobra"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage the cluster's hosts (through the controller)"}
	cmd.AddCommand(newNodeLsCmd(g), newNodeRmCmd(g), newNodeResetTokenCmd(g), newNodeJoinTokenCmd(g), newNodeGossipKeyCmd(g), newNodeRotateKeyCmd(g), newNodeInspectCmd(g))
	return cmd
}

func newNodeLsCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls [-o json]",
		Aliases: []string{"list"},
		Short:   "List hosts: their agent (alive: heartbeat recent; dead: silent) and data plane (as the other hosts find it)",
		Long: `ls lists the cluster's hosts. AGENT says whether the host's agent talks to the controller (alive) or
has been silent (dead). DATAPLANE says whether the other hosts still reach the host's kernel: a host
whose agent is stopped for an upgrade stays reachable and its containers keep their cross-host traffic;
an unreachable host (down, cut off) has its entries withdrawn, and the column names who reports it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.controller()
			if err != nil {
				return err
			}
			hosts, err := c.ListHosts(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(hosts)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tAGENT\tDATAPLANE\tWG KEY\tLAST SEEN\tLABELS")
			for _, h := range hosts {
				var labels []string
				for k, v := range h.Labels {
					labels = append(labels, k+"="+v)
				}
				sort.Strings(labels)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Address, h.State, dataplaneColumn(h), keyColumn(h), ago(h.LastSeen), strings.Join(labels, ","))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

// dataplaneColumn renders a host's data plane state: "unreachable (from host2,host3)" names who
// reports it; "-" when the controller could not tell.
func dataplaneColumn(h api.Host) string {
	switch {
	case h.Dataplane == "":
		return "-"
	case len(h.UnreachableFrom) > 0:
		return h.Dataplane + " (from " + strings.Join(h.UnreachableFrom, ",") + ")"
	}
	return h.Dataplane
}

// keyColumn renders a host's WireGuard public key as a short fingerprint, "(rotating)" while a
// rotation is asked for and not yet answered.
func keyColumn(h api.Host) string {
	if h.RotateKey {
		return api.KeyFingerprint(h.WireGuardKey) + " (rotating)"
	}
	return api.KeyFingerprint(h.WireGuardKey)
}

func newNodeInspectCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect HOST...",
		Short: "Show hosts as JSON (address, state, WireGuard public key)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.controller()
			if err != nil {
				return err
			}
			var out []api.Host
			for _, name := range args {
				h, err := c.GetHost(cmd.Context(), name)
				if err != nil {
					return err
				}
				out = append(out, h)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
}

func newNodeRotateKeyCmd(g *globals) *cobra.Command {
	var revoke bool
	cmd := &cobra.Command{
		Use:   "rotate-key [--revoke] HOST",
		Short: "Make the host's agent replace its WireGuard key pair (encrypted networks)",
		Long: `rotate-key asks the host's agent for a new WireGuard key pair: at its next heartbeat it makes one,
switches to it and publishes the public key; the other hosts update their peer entry when they see it
(a few packets of its encrypted traffic are lost, see docs/encryption.md). --revoke also removes the
published key at once: the other hosts drop their tunnel to the host until the new key arrives (use it
when the private key may have leaked).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.controller()
			if err != nil {
				return err
			}
			h, err := c.RotateHostKey(cmd.Context(), args[0], revoke)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: key rotation requested (current key %s)\n", h.Name, api.KeyFingerprint(h.WireGuardKey))
			return nil
		},
	}
	cmd.Flags().BoolVar(&revoke, "revoke", false, "remove the published key at once (the host's encrypted traffic stops until its new key is published)")
	return cmd
}

func newNodeRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm HOST...",
		Aliases: []string{"remove"},
		Short:   "Remove hosts from the cluster and release every address they held",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.controller()
			if err != nil {
				return err
			}
			var failed error
			for _, name := range args {
				if err := c.RemoveHost(cmd.Context(), name); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "ovctl:", err)
					failed = &exitError{code: 1}
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), name)
			}
			return failed
		},
	}
}

func newNodeGossipKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gossip-key",
		Short: "Show or rotate the key that encrypts the agents' gossip",
		Long: `The controller keeps the cluster's gossip keyring and gives it only to registered hosts. Without a
subcommand this shows its version and how many keys it holds (never the keys).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.controller()
			if err != nil {
				return err
			}
			kr, err := c.GossipKeyring(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "gossip keyring version %d, %d key(s)\n", kr.Version, len(kr.Keys))
			return nil
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Put a fresh primary gossip key in place, keeping the previous one as secondary",
		Long: `rotate makes a fresh primary key; the previous primary stays accepted as secondary so that agents
switch without losing a message (they refetch the keyring at their next heartbeat). Rotate twice to
drop a leaked key altogether.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.controller()
			if err != nil {
				return err
			}
			kr, err := c.RotateGossipKeyring(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "gossip keyring rotated: version %d, %d key(s)\n", kr.Version, len(kr.Keys))
			return nil
		},
	})
	return cmd
}

func newNodeJoinTokenCmd(g *globals) *cobra.Command {
	var rotate bool
	var ttl string
	cmd := &cobra.Command{
		Use:   "join-token [--rotate [--ttl DURATION]]",
		Short: "Show the token agents register new hosts with, or replace it",
		Long: `join-token prints the cluster's join token on stdout (and when it expires on stderr). With --rotate
it makes a new one, which works for --ttl (default: the controller's --join-token-ttl, 24h; 0: never
expires); the old token stops working at once. Registered hosts are not affected: they use their
own host tokens.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl != "" && !rotate {
				return fmt.Errorf("--ttl applies to a new token; add --rotate: %w", errdefs.ErrInvalidArgument)
			}
			if ttl != "" {
				if d, err := time.ParseDuration(ttl); err != nil || d < 0 {
					return fmt.Errorf("--ttl %q is not a duration such as 24h or 30m (0: never expires): %w", ttl, errdefs.ErrInvalidArgument)
				}
			}
			c, err := g.controller()
			if err != nil {
				return err
			}
			var jt api.JoinToken
			if rotate {
				jt, err = c.RotateJoinToken(cmd.Context(), ttl)
			} else {
				jt, err = c.JoinToken(cmd.Context())
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), jt.Token)
			switch {
			case jt.Expires.IsZero():
				fmt.Fprintln(cmd.ErrOrStderr(), "never expires")
			case time.Now().After(jt.Expires):
				fmt.Fprintf(cmd.ErrOrStderr(), "expired at %s; make a new one with ovctl node join-token --rotate\n", jt.Expires.Local().Format(time.RFC3339))
			default:
				fmt.Fprintf(cmd.ErrOrStderr(), "expires at %s (in %s)\n", jt.Expires.Local().Format(time.RFC3339), time.Until(jt.Expires).Round(time.Second))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the join token with a new one")
	cmd.Flags().StringVar(&ttl, "ttl", "", "with --rotate: how long the new token works, e.g. 2h (0: never expires)")
	return cmd
}
