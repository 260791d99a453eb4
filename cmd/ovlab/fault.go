package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/lab"
)

// target is what `ovlab kill` and `ovlab start` act on: one process of the lab.
type target struct {
	use, short string
	args       int // arguments after the target's name
	kill       func(l *lab.Lab, args []string) error
	start      func(ctx context.Context, l *lab.Lab, args []string) error
	pid        func(l *lab.Lab, args []string) int
}

func targets() []target {
	return []target{
		{
			use: "controller", short: "the controller",
			kill:  func(l *lab.Lab, _ []string) error { return l.KillController() },
			start: func(ctx context.Context, l *lab.Lab, _ []string) error { return l.StartController(ctx) },
			pid:   func(l *lab.Lab, _ []string) int { return l.Controller.PID },
		},
		{
			use: "agent HOST", short: "the agent of HOST (host1, host2, ...)", args: 1,
			kill:  func(l *lab.Lab, a []string) error { return l.KillAgent(a[0], syscall.SIGKILL) },
			start: func(ctx context.Context, l *lab.Lab, a []string) error { return l.StartAgent(ctx, a[0]) },
			pid: func(l *lab.Lab, a []string) int {
				if h, err := l.Host(a[0]); err == nil {
					return h.Agent.PID
				}
				return 0
			},
		},
		{
			use: "etcd N", short: "member N (1, 2, ...) of the lab's external etcd", args: 1,
			kill: func(l *lab.Lab, a []string) error {
				n, err := member(l, a[0])
				if err != nil {
					return err
				}
				return l.KillEtcd(n)
			},
			start: func(ctx context.Context, l *lab.Lab, a []string) error {
				n, err := member(l, a[0])
				if err != nil {
					return err
				}
				return l.StartEtcd(ctx, n)
			},
			pid: func(l *lab.Lab, a []string) int {
				if n, err := strconv.Atoi(a[0]); err == nil && n >= 1 && n <= len(l.Etcd) {
					return l.Etcd[n-1].Proc.PID
				}
				return 0
			},
		},
	}
}

// member parses an etcd member number; a lab with the embedded etcd has none.
func member(l *lab.Lab, arg string) (int, error) {
	if len(l.Etcd) == 0 {
		return 0, fmt.Errorf("etcd member %s: this lab runs an embedded etcd inside the controller; start it with --etcd external (ovlab down, then ovlab up --etcd external)", arg)
	}
	n, err := strconv.Atoi(arg)
	if err != nil {
		return 0, fmt.Errorf("etcd member %q: give the member's number, 1 to %d", arg, len(l.Etcd))
	}
	return n, nil
}

// newKill is `ovlab kill controller|agent HOST|etcd N`.
func newKill(dir *string) *cobra.Command {
	c := &cobra.Command{
		Use:   "kill controller | agent HOST | etcd N",
		Short: "SIGKILL a process of the lab, as a crash would (an agent's containers keep running)",
	}
	for _, t := range targets() {
		c.AddCommand(&cobra.Command{
			Use:   t.use,
			Short: "SIGKILL " + t.short,
			Args:  cobra.ExactArgs(t.args),
			RunE: func(cmd *cobra.Command, args []string) error {
				l, err := lab.Load(*dir)
				if err != nil {
					return err
				}
				pid := t.pid(l, args)
				if err := t.kill(l, args); err != nil {
					if errors.Is(err, errdefs.ErrConflict) {
						return fmt.Errorf("%w; start it with ovlab start %s%s", err, cmd.Name(), argString(args))
					}
					return err
				}
				fmt.Printf("killed %s%s%s\n", cmd.Name(), argString(args), pidString(pid))
				return nil
			},
		})
	}
	return c
}

// newStart is `ovlab start controller|agent HOST|etcd N`.
func newStart(dir *string) *cobra.Command {
	c := &cobra.Command{
		Use:   "start controller | agent HOST | etcd N",
		Short: "Start a process of the lab again, with the configuration ovlab up gave it",
	}
	for _, t := range targets() {
		c.AddCommand(&cobra.Command{
			Use:   t.use,
			Short: "start " + t.short + " again (same flags, data, tokens and ports)",
			Args:  cobra.ExactArgs(t.args),
			RunE: func(cmd *cobra.Command, args []string) error {
				l, err := lab.Load(*dir)
				if err != nil {
					return err
				}
				if err := t.start(cmd.Context(), l, args); err != nil {
					return err
				}
				fmt.Printf("started %s%s%s\n", cmd.Name(), argString(args), pidString(t.pid(l, args)))
				return nil
			},
		})
	}
	return c
}

func argString(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return " " + args[0]
}

func pidString(pid int) string {
	if pid == 0 {
		return ""
	}
	return " (pid " + strconv.Itoa(pid) + ")"
}

// newPartition is `ovlab partition HOST`.
func newPartition(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "partition HOST",
		Short: "Cut HOST off the underlay: iptables DROP rules inside its namespace; its processes keep running",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Load(*dir)
			if err != nil {
				return err
			}
			if err := l.Partition(args[0]); err != nil {
				return err
			}
			fmt.Printf("%s partitioned; reconnect it with ovlab heal %s\n", args[0], args[0])
			return nil
		},
	}
}

// newHeal is `ovlab heal HOST`.
func newHeal(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "heal HOST",
		Short: "Reconnect a partitioned HOST: remove exactly the rules ovlab partition made",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Load(*dir)
			if err != nil {
				return err
			}
			if err := l.Heal(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("%s healed\n", args[0])
			return nil
		},
	}
}
