// Command ovlab builds and removes ov's multi-host lab on one machine: hosts made of network
// namespaces on a shared underlay bridge, each running a real ovagent, plus an ovcontroller with an
// embedded etcd. See docs/install.md ("The lab").
package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/internal/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "ovlab:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	def := lab.DefaultConfig()
	dir := def.Dir
	root := &cobra.Command{
		Use:           "ovlab",
		Short:         "Build and remove ov's multi-host lab on this machine",
		Long:          "ovlab makes N hosts on this machine: network namespaces on a shared underlay bridge, each running a real ovagent, plus an ovcontroller with an embedded etcd. Needs root and a built ov (make build).",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&dir, "dir", dir, "directory holding the lab's state, logs and the hosts' data")
	root.AddCommand(newUp(&dir), newDown(&dir), newStatus(&dir), newCtl(&dir), newExec(&dir))
	return root
}

func newUp(dir *string) *cobra.Command {
	cfg := lab.DefaultConfig()
	subnet := cfg.Subnet.String()
	c := &cobra.Command{
		Use:   "up",
		Short: "Start a lab: underlay, hosts, controller and agents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := netip.ParsePrefix(subnet)
			if err != nil {
				return fmt.Errorf("--subnet %q is not a CIDR such as 192.168.77.0/24", subnet)
			}
			cfg.Subnet, cfg.Dir = p, *dir
			l, err := lab.Up(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			printStatus(l)
			fmt.Printf("\nrun ovctl on a host with: ovlab ctl host1 -- ps\ntake the lab down with:   ovlab down\n")
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&cfg.Hosts, "hosts", cfg.Hosts, "number of hosts (1-9)")
	f.StringVar(&subnet, "subnet", subnet, "underlay subnet; the controller takes .1, host i takes .10+i")
	f.IntVar(&cfg.MTU, "mtu", cfg.MTU, "MTU of the underlay links (overlay networks derive theirs: MTU - 50)")
	f.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "prefix of every namespace, link and cgroup of the lab")
	f.StringVar(&cfg.Bin, "bin", cfg.Bin, "directory holding ovagent, ovcontroller, ovctl and ovrt")
	return c
}

func newDown(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove the lab: containers, agents, controller, namespaces, mounts, cgroups, files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Load(*dir)
			if err != nil {
				return err
			}
			if err := l.Down(cmd.Context()); err != nil {
				return err
			}
			fmt.Println("lab removed")
			return nil
		},
	}
}

func newStatus(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the lab's hosts, addresses and processes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Load(*dir)
			if err != nil {
				return err
			}
			printStatus(l)
			return nil
		},
	}
}

func newCtl(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:                "ctl HOST -- OVCTL-ARGS...",
		Short:              "Run ovctl on a host of the lab (its agent, the lab's controller and admin token)",
		Args:               cobra.MinimumNArgs(1),
		DisableFlagParsing: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Load(*dir)
			if err != nil {
				return err
			}
			c, err := l.Ctl(args[0], args[1:]...)
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			return c.Run()
		},
	}
}

func newExec(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "exec HOST -- COMMAND...",
		Short: "Run a command in a host's network namespace",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Load(*dir)
			if err != nil {
				return err
			}
			h, err := l.Host(args[0])
			if err != nil {
				return err
			}
			c := exec.Command("nsenter", append([]string{"--net=/run/netns/" + h.Netns, "--"}, args[1:]...)...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			return c.Run()
		},
	}
}

func printStatus(l *lab.Lab) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "controller\t%s\tnetns %s\tpid %d\n", l.ControllerURL, l.UnderlayNetns, l.ControllerPID)
	for _, h := range l.Hosts {
		fmt.Fprintf(w, "%s\t%s\tnetns %s\tpid %d\tsocket %s\n", h.Name, h.Addr, h.Netns, h.AgentPID, h.Socket)
	}
	_ = w.Flush()
}
