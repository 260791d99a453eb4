package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/api"
)

func newVolumeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage the local agent's named volumes (see docs/volumes.md)"}
	cmd.AddCommand(newVolumeCreateCmd(g), newVolumeLsCmd(g), newVolumeInspectCmd(g), newVolumeRmCmd(g))
	return cmd
}

func newVolumeCreateCmd(g *globals) *cobra.Command {
	var req api.VolumeCreate
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [--label KEY=VALUE]... [NAME]",
		Short: "Create a volume (without NAME: a random one); print its name",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				req.Name = args[0]
			}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				if k == "" {
					return fmt.Errorf("--label %q: use KEY=VALUE", l)
				}
				if req.Labels == nil {
					req.Labels = map[string]string{}
				}
				req.Labels[k] = v
			}
			if err := req.Validate(); err != nil {
				return err
			}
			v, err := g.agent().CreateVolume(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Println(v.Name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&req.Driver, "driver", "d", api.VolumeDriverLocal, "volume driver (local only)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "set a label KEY=VALUE (repeatable)")
	return cmd
}

func newVolumeLsCmd(g *globals) *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "ls [-q] [--format TEMPLATE]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vs, err := g.agent().Volumes(cmd.Context())
			if err != nil {
				return err
			}
			if quiet {
				format = "{{.Name}}"
			}
			rows := make([]any, len(vs))
			for i, v := range vs {
				rows[i] = newVolumeRow(v)
			}
			return writeFormatted(os.Stdout, format, volumeTable, volumeHeaders, rows)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only names")
	cmd.Flags().StringVar(&format, "format", "", formatHelp)
	return cmd
}

func newVolumeInspectCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [-f TEMPLATE] VOLUME...",
		Short: "Show volumes as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.Volume
			for _, name := range args {
				v, err := g.agent().Volume(cmd.Context(), name)
				if err != nil {
					return err
				}
				out = append(out, v)
			}
			if format != "" {
				return writeInspect(os.Stdout, format, toRows(out))
			}
			return printJSON(out)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format each volume with a Go template, e.g. '{{.Mountpoint}}'")
	return cmd
}

func newVolumeRmCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [-f] VOLUME...",
		Aliases: []string{"remove"},
		Short:   "Remove volumes and their content (refused while a container uses one)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainer(args, func(name string) error { return g.agent().RemoveVolume(cmd.Context(), name, force) })
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "no error for a volume that does not exist")
	return cmd
}
