// Command ovlab builds and removes ov's multi-host lab on one machine: hosts made of network
// namespaces on a shared underlay bridge, each running a real ovagent, plus an ovcontroller with an
// embedded etcd or an external etcd cluster. It also injects faults: it kills and starts the lab's
// processes and partitions and heals its hosts. See docs/install.md ("The lab").
package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
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
		Long:          "ovlab makes N hosts on this machine: network namespaces on a shared underlay bridge, each running a real ovagent, plus an ovcontroller with an embedded etcd (or an external etcd cluster). It injects faults too: kill and start the controller, an agent or an etcd member; partition and heal a host. Needs root and a built ov (make build).",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&dir, "dir", dir, "directory holding the lab's state, logs and the hosts' data")
	root.AddCommand(newUp(&dir), newDown(&dir), newStatus(&dir), newCtl(&dir), newExec(&dir),
		newKill(&dir), newStart(&dir), newPartition(&dir), newHeal(&dir))
	return root
}

func newUp(dir *string) *cobra.Command {
	cfg := lab.DefaultConfig()
	subnet := cfg.Subnet.String()
	etcd, members := "embedded", 3
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
			switch etcd {
			case "embedded":
				if cmd.Flags().Changed("etcd-members") {
					return fmt.Errorf("--etcd-members %d: members are for an external etcd; add --etcd external", members)
				}
				cfg.EtcdMembers = 0
			case "external":
				if members < 1 {
					return fmt.Errorf("--etcd-members %d: an external etcd needs at least 1 member (3 tolerate the loss of one)", members)
				}
				cfg.EtcdMembers = members
			default:
				return fmt.Errorf("--etcd %q: use embedded (inside the controller) or external (a cluster of etcd processes)", etcd)
			}
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
	f.StringVar(&etcd, "etcd", etcd, "embedded: the controller runs its own etcd; external: a cluster of etcd processes (Debian's etcd-server) in the underlay namespace")
	f.IntVar(&members, "etcd-members", members, "members of the external etcd cluster (with --etcd external)")
	f.StringVar(&cfg.EtcdBin, "etcd-bin", cfg.EtcdBin, "etcd server run for each external member")
	f.IntVar(&cfg.MetricsPort, "metrics-port", cfg.MetricsPort, "serve Prometheus metrics on this port: the controller's on its underlay address, each agent's on 127.0.0.1 in its host's namespace (0: none)")
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
	fmt.Fprintf(w, "PROCESS\tSTATE\tPID\tADDRESS\tNETNS\tNOTES\n")
	row := func(name string, p lab.Proc, addr, notes string) {
		state, pid := "stopped", "-"
		if p.Running() {
			state, pid = "running", strconv.Itoa(p.PID)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", name, state, pid, addr, p.Netns, notes)
	}
	etcd := "embedded etcd"
	if len(l.Etcd) > 0 {
		etcd = fmt.Sprintf("external etcd, %d members", len(l.Etcd))
	}
	row("controller", l.Controller, l.ControllerURL, etcd)
	for i, m := range l.Etcd {
		row("etcd "+strconv.Itoa(i+1), m.Proc, m.ClientURL, "data "+m.Dir)
	}
	for _, h := range l.Hosts {
		notes := "socket " + h.Socket
		if h.Partitioned {
			notes = "PARTITIONED, " + notes
		}
		row("agent "+h.Name, h.Agent, h.Addr, notes)
	}
	_ = w.Flush()
}
