package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newNodeResetTokenCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reset-token HOST",
		Short: "Give a host a new token, keeping its containers' addresses",
		Long: `reset-token revokes HOST's token (the old one stops working at once) and lets HOST's agent register
again with the cluster's join token, once: it gets a new host token, keeps its record and labels,
and the addresses its running containers hold are neither released nor changed. Use it when the
agent lost its host token (its data directory was wiped or the token file damaged) or the token may
have leaked; the agent re-joins by itself within seconds, provided it has the join token (see
ovctl node join-token). Unlike ovctl node rm, nothing is released.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.controller()
			if err != nil {
				return err
			}
			if _, err := c.ResetToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: token reset; its agent registers again with the join token and keeps its containers' addresses\n", args[0])
			return nil
		},
	}
}
