package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/ovnet/ov/internal/ovrt"
)

// createFlags are the flags create and run share.
type createFlags struct {
	bundle, pidFile, consoleSocket string
	noPivot, noNewKeyring          bool
	preserveFDs                    int
}

func (f *createFlags) add(c *cobra.Command) {
	c.Flags().StringVarP(&f.bundle, "bundle", "b", ".", "path to the bundle directory (config.json and rootfs)")
	c.Flags().StringVar(&f.pidFile, "pid-file", "", "write the container init's pid to this file")
	c.Flags().StringVar(&f.consoleSocket, "console-socket", "", "unix socket to send the pty master to (process.terminal)")
	c.Flags().BoolVar(&f.noPivot, "no-pivot", false, "ignored: ovrt always uses pivot_root")
	c.Flags().BoolVar(&f.noNewKeyring, "no-new-keyring", false, "ignored (runc compatibility)")
	c.Flags().IntVar(&f.preserveFDs, "preserve-fds", 0, "not supported; must be 0")
}

func (f *createFlags) create(g *globals, id string) (*ovrt.Container, error) {
	if f.preserveFDs != 0 {
		return nil, fmt.Errorf("--preserve-fds is not supported by ovrt")
	}
	rt, err := g.runtime()
	if err != nil {
		return nil, err
	}
	c, err := rt.Create(id, ovrt.CreateOptions{
		Bundle: f.bundle, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, ConsoleSocket: f.consoleSocket,
	})
	if err != nil {
		return nil, err
	}
	if err := writePidFile(f.pidFile, c.Pid()); err != nil {
		_ = c.Delete(true)
		return nil, err
	}
	return c, nil
}

func newCreate(g *globals) *cobra.Command {
	var f createFlags
	c := &cobra.Command{
		Use:   "create [flags] ID",
		Short: "Create a container from a bundle; its process waits for start",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			_, err := f.create(g, args[0])
			return err
		},
	}
	f.add(c)
	return c
}

func newStart(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "start ID",
		Short: "Start the process of a created container",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := g.load(args[0])
			if err != nil {
				return err
			}
			return c.Start()
		},
	}
}

func newState(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "state ID",
		Short: "Print the OCI state of a container as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := g.load(args[0])
			if err != nil {
				return err
			}
			return printJSON(c.State())
		},
	}
}

func printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(b))
	return err
}

func newKill(g *globals) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "kill [flags] ID [SIGNAL]",
		Short: "Send a signal (default TERM) to a container's init, or with --all to all its processes",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			sig := syscall.SIGTERM
			if len(args) == 2 {
				var err error
				if sig, err = ovrt.ParseSignal(args[1]); err != nil {
					return err
				}
			}
			c, err := g.load(args[0])
			if err != nil {
				return err
			}
			return c.Kill(sig, all)
		},
	}
	c.Flags().BoolVarP(&all, "all", "a", false, "signal every process of the container")
	return c
}

func newDelete(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "delete [flags] ID",
		Short: "Delete a stopped container (or, with --force, kill and delete a running one)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := g.load(args[0])
			if err != nil {
				return err
			}
			return c.Delete(force)
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "kill the container if it is running")
	return c
}

func newRun(g *globals) *cobra.Command {
	var f createFlags
	var detach bool
	c := &cobra.Command{
		Use:   "run [flags] ID",
		Short: "Create and start a container; without --detach wait for it, delete it and exit with its exit code",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			// Signals for the container arrive before it runs: catch them from the start.
			sigc := make(chan os.Signal, 16)
			if !detach {
				signal.Notify(sigc)
				defer signal.Stop(sigc)
			}
			c, err := f.create(g, args[0])
			if err != nil {
				return err
			}
			if err := c.Start(); err != nil {
				_ = c.Delete(true)
				return err
			}
			if detach {
				return nil
			}
			done := make(chan struct{})
			go forward(func(sig syscall.Signal) { _ = c.Kill(sig, false) }, sigc, done)
			st, err := c.Wait()
			close(done)
			if derr := c.Delete(true); err == nil {
				err = derr
			}
			if err != nil {
				return err
			}
			return &exitError{st.Code}
		},
	}
	f.add(c)
	c.Flags().BoolVarP(&detach, "detach", "d", false, "return once the container has started")
	return c
}

// forward passes the signals ovrt receives on to the container's process, as runc does.
func forward(send func(syscall.Signal), sigc <-chan os.Signal, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case s := <-sigc:
			sig, ok := s.(syscall.Signal)
			if !ok || sig == syscall.SIGCHLD || sig == syscall.SIGURG || sig == syscall.SIGPIPE {
				continue
			}
			send(sig)
		}
	}
}

func newExec(g *globals) *cobra.Command {
	var (
		processPath, pidFile, consoleSocket, cwd, user string
		env, caps                                      []string
		detach, tty, noNewPrivs                        bool
	)
	c := &cobra.Command{
		Use:   "exec [flags] ID [COMMAND [ARG...]]",
		Short: "Run a process inside a running container, in all of its namespaces",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ct, err := g.load(args[0])
			if err != nil {
				return err
			}
			var p specs.Process
			if processPath != "" {
				b, err := os.ReadFile(processPath)
				if err != nil {
					return fmt.Errorf("--process: %w", err)
				}
				if err := json.Unmarshal(b, &p); err != nil {
					return fmt.Errorf("--process %s: not an OCI process: %w", processPath, err)
				}
			} else {
				if len(args) < 2 {
					return fmt.Errorf("exec %s: give a command or --process", args[0])
				}
				// Defaults from the container's own process, as runc does.
				if base := ct.Spec().Process; base != nil {
					p = *base
				}
				p.Args = args[1:]
				p.Terminal = tty
				p.Env = append(append([]string(nil), p.Env...), env...)
				if cwd != "" {
					p.Cwd = cwd
				}
				if noNewPrivs {
					p.NoNewPrivileges = true
				}
				if user != "" {
					if err := parseUser(user, &p.User); err != nil {
						return err
					}
				}
				if len(caps) > 0 && p.Capabilities != nil {
					cp := *p.Capabilities
					cp.Bounding = append(append([]string(nil), cp.Bounding...), caps...)
					cp.Effective = append(append([]string(nil), cp.Effective...), caps...)
					cp.Permitted = append(append([]string(nil), cp.Permitted...), caps...)
					p.Capabilities = &cp
				}
			}
			sigc := make(chan os.Signal, 16)
			if !detach {
				signal.Notify(sigc)
				defer signal.Stop(sigc)
			}
			proc, err := ct.Exec(ovrt.ExecOptions{Process: p, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, ConsoleSocket: consoleSocket})
			if err != nil {
				return err
			}
			if err := writePidFile(pidFile, proc.Pid); err != nil {
				return err
			}
			if detach {
				return nil
			}
			done := make(chan struct{})
			defer close(done)
			go forward(func(sig syscall.Signal) { _ = syscall.Kill(proc.Pid, sig) }, sigc, done)
			st, err := proc.Wait()
			if err != nil {
				return err
			}
			return &exitError{st.Code}
		},
	}
	c.Flags().SetInterspersed(false)
	c.Flags().StringVarP(&processPath, "process", "p", "", "JSON file with the OCI process to run")
	c.Flags().StringVar(&pidFile, "pid-file", "", "write the process's pid to this file")
	c.Flags().StringVar(&consoleSocket, "console-socket", "", "unix socket to send the pty master to")
	c.Flags().BoolVarP(&detach, "detach", "d", false, "return once the process has started")
	c.Flags().BoolVarP(&tty, "tty", "t", false, "allocate a pseudo-TTY (needs --console-socket)")
	c.Flags().StringVar(&cwd, "cwd", "", "working directory inside the container")
	c.Flags().StringVarP(&user, "user", "u", "", "UID[:GID] to run as")
	c.Flags().StringArrayVarP(&env, "env", "e", nil, "extra environment variable KEY=VALUE")
	c.Flags().StringArrayVarP(&caps, "cap", "c", nil, "extra capability (CAP_...)")
	c.Flags().BoolVar(&noNewPrivs, "no-new-privs", false, "set no_new_privs")
	return c
}

func parseUser(s string, u *specs.User) error {
	uid, gid, hasGid := strings.Cut(s, ":")
	n, err := strconv.ParseUint(uid, 10, 32)
	if err != nil {
		return fmt.Errorf("--user %q: use numeric UID[:GID]", s)
	}
	u.UID = uint32(n)
	if hasGid {
		m, err := strconv.ParseUint(gid, 10, 32)
		if err != nil {
			return fmt.Errorf("--user %q: use numeric UID[:GID]", s)
		}
		u.GID = uint32(m)
	}
	return nil
}

func newPs(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "ps [flags] ID",
		Short: "List the processes of a container (host pids)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			ct, err := g.load(args[0])
			if err != nil {
				return err
			}
			pids, err := ct.Processes()
			if err != nil {
				return err
			}
			if format == "json" {
				if pids == nil {
					pids = []int{}
				}
				return json.NewEncoder(os.Stdout).Encode(pids)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PID\tCMD")
			for _, p := range pids {
				b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "cmdline"))
				fmt.Fprintf(w, "%d\t%s\n", p, strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")))
			}
			return w.Flush()
		},
	}
	c.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	return c
}

func newList(g *globals) *cobra.Command {
	var format string
	var quiet bool
	c := &cobra.Command{
		Use:   "list [flags]",
		Short: "List the containers under --root",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			states, err := rt.List()
			if err != nil {
				return err
			}
			switch {
			case quiet:
				for _, s := range states {
					fmt.Println(s.ID)
				}
				return nil
			case format == "json":
				if states == nil {
					states = []ovrt.State{}
				}
				return printJSON(states)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED")
			for _, s := range states {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
	c.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the ids")
	return c
}
