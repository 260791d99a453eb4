package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/api"
)

func newNetworkCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage the local agent's networks"}
	cmd.AddCommand(newNetworkCreateCmd(g), newNetworkLsCmd(g), newNetworkInspectCmd(g), newNetworkRmCmd(g),
		newNetworkConnectCmd(g, true), newNetworkConnectCmd(g, false))
	return cmd
}

func newNetworkCreateCmd(g *globals) *cobra.Command {
	var n api.Network
	cmd := &cobra.Command{
		Use:   "create [-d bridge] [--subnet CIDR] [--gateway IP] [--ip-range CIDR] [--internal] NAME",
		Short: "Create a network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n.Name = args[0]
			if err := n.Validate(); err != nil {
				return err
			}
			if n.Driver == api.DriverOverlay { // cluster-wide: the controller owns it
				return createOverlay(cmd.Context(), g, n)
			}
			out, err := g.agent().CreateNetwork(cmd.Context(), n)
			if err != nil {
				return err
			}
			fmt.Println(out.ID)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&n.Driver, "driver", "d", api.DriverBridge, "network driver (bridge; overlay through the controller)")
	fl.StringVar(&n.Subnet, "subnet", "", "subnet in CIDR form (default: picked from the address pools)")
	fl.StringVar(&n.Gateway, "gateway", "", "gateway address (default: the subnet's first address)")
	fl.StringVar(&n.IPRange, "ip-range", "", "part of the subnet containers get addresses from")
	fl.BoolVar(&n.Internal, "internal", false, "no outbound NAT: containers reach only their network")
	fl.BoolVar(&n.Encrypted, "encrypted", false, "overlay only: encrypt traffic between hosts with WireGuard (fixed once created)")
	fl.IntVar(&n.MTU, "mtu", 0, "MTU (default: the agent's)")
	fl.Uint32Var(&n.VNI, "vni", 0, "overlay only: VXLAN network identifier (default: picked by the controller)")
	fl.StringToStringVar(&n.Labels, "label", nil, "labels KEY=VALUE")
	return cmd
}

func newNetworkLsCmd(g *globals) *cobra.Command {
	var output, format string
	cmd := &cobra.Command{
		Use:     "ls [-o json] [--format TEMPLATE]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nets, err := g.allNetworks(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(nets)
			}
			if format != "" {
				return writeFormatted(os.Stdout, format, networkTable, networkHeaders, networkRows(nets))
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NETWORK ID\tNAME\tDRIVER\tSUBNET\tGATEWAY\tINTERNAL\tENCRYPTED")
			for _, n := range nets {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%v\n", api.ShortID(n.ID), n.Name, n.Driver, n.Subnet, n.Gateway, n.Internal, n.Encrypted)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	cmd.Flags().StringVar(&format, "format", "", formatHelp)
	return cmd
}

func newNetworkInspectCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NETWORK...",
		Short: "Show networks as JSON, with this host's data plane for overlay networks",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.Network
			for _, name := range args {
				n, err := g.network(cmd.Context(), name)
				if err != nil {
					return err
				}
				out = append(out, n)
			}
			if err := printJSON(out); err != nil {
				return err
			}
			for _, n := range out {
				if dp := n.Dataplane; dp != nil && len(dp.Problems) > 0 {
					fmt.Fprintf(os.Stderr, "warning: host %s leaves %d entries of network %q out of its data plane; the rest is programmed (see dataplane.problems)\n", dp.Host, len(dp.Problems), n.Name)
				}
			}
			return nil
		},
	}
}

func newNetworkRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NETWORK...",
		Aliases: []string{"remove"},
		Short:   "Remove networks no container uses",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainer(args, func(name string) error { return g.deleteNetwork(cmd.Context(), name, false) })
		},
	}
}

func newNetworkConnectCmd(g *globals, connect bool) *cobra.Command {
	var req api.NetworkConnect
	use, short := "connect [--ip IP] [--alias NAME]... NETWORK CONTAINER", "Connect a running container to a network"
	if !connect {
		use, short = "disconnect NETWORK CONTAINER", "Disconnect a container from a network"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Container = args[1]
			var err error
			if connect {
				_, err = g.agent().Connect(cmd.Context(), args[0], req)
			} else {
				_, err = g.agent().Disconnect(cmd.Context(), args[0], req)
			}
			return err
		},
	}
	if connect {
		cmd.Flags().StringVar(&req.IP, "ip", "", "static IPv4 address on the network")
		cmd.Flags().StringArrayVar(&req.Aliases, "alias", nil, "another DNS name of the container on this network (repeatable; user-defined networks only)")
	} else {
		cmd.Flags().BoolVarP(&req.Force, "force", "f", false, "disconnect even when the container is not running")
	}
	return cmd
}
