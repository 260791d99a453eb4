package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/internal/controller/apply"
	"github.com/ovnet/ov/internal/errdefs"
)

// cluster returns the controller client of the global flags (controller.go) as an apply.Cluster.
func (g *globals) cluster(context.Context) (apply.Cluster, error) { return g.controller() }

// newApplyCmd returns `ovctl apply`. connect returns the controller client, built from the root
// command's global flags; it is called only once the file is known to be valid, so a bad file is
// reported even when no controller is reachable.
func newApplyCmd(connect func(ctx context.Context) (apply.Cluster, error)) *cobra.Command {
	var (
		filename string
		output   string
		opts     apply.Options
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE [--dry-run] [--prune] [-o json]",
		Short: "Make the cluster's networks and hosts match a cluster file",
		Long: `Make the cluster's networks and hosts match a declarative cluster file (docs/cluster-yaml.md).

The whole file is validated and planned against the cluster before the first change; a file with an
error changes nothing and every problem is reported as FILE:LINE: message. Each change is printed:
"+" create, "~" change in place, "-" delete, "=" unchanged. Applying the same file twice changes nothing.

Only labels and internal change in place; a new subnet, gateway, ipRange, VNI, MTU or driver for an
existing network is refused. --prune deletes the networks that apply created (label
ov.apply/managed=true) and that the file no longer names; other networks and hosts are never deleted.`,
		Example: `  ovctl apply -f cluster.yaml --dry-run
  ovctl apply -f cluster.yaml
  ovctl apply -f cluster.yaml --prune`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "":
			case "json":
				opts.JSON = true
			default:
				return fmt.Errorf("--output %q: the only format is json: %w", output, errdefs.ErrInvalidArgument)
			}
			data, name, err := readClusterFile(filename, cmd.InOrStdin())
			if err != nil {
				return err
			}
			f, err := apply.Parse(name, data)
			if err != nil {
				return err
			}
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			return apply.Run(cmd.Context(), c, f, opts, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&filename, "filename", "f", "", "the cluster file to apply (- reads standard input)")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print the plan and change nothing")
	fl.BoolVar(&opts.Prune, "prune", false, "also delete the networks apply created that the file no longer names")
	fl.StringVarP(&output, "output", "o", "", "output format: json (the plan as one object, with \"applied\")")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// readClusterFile reads the file named by -f, or stdin for "-", and returns the name to use in messages.
func readClusterFile(filename string, stdin io.Reader) (data []byte, name string, err error) {
	if filename == "-" {
		data, err = io.ReadAll(stdin)
		if err != nil {
			return nil, "", fmt.Errorf("read the cluster file from standard input: %w", err)
		}
		return data, "<stdin>", nil
	}
	data, err = os.ReadFile(filename)
	if err != nil {
		return nil, "", fmt.Errorf("read the cluster file: %w", err)
	}
	return data, filename, nil
}
