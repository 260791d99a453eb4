package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/agent/client"
	"github.com/ovnet/ov/internal/errdefs"
)

// runFlags are the flags of run and create.
type runFlags struct {
	detach, rm, interactive, tty, readOnly, privileged bool
	name, workdir, user, network, ip, hostname         string
	memory, entrypoint                                 string
	cpus                                               float64
	pidsLimit                                          int64
	env, ports, volumes, capAdd, capDrop, logOpts      []string
	aliases, dns, dnsSearch, dnsOptions                []string
	proc                                               procFlags // run_proc.go
	mountFlags                                                   // ctl-mounts: --mount, --tmpfs (run_mounts.go)
	restartFlags
}

func (f *runFlags) register(cmd *cobra.Command, withRun bool) {
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	if withRun {
		fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the container ID")
	}
	fl.BoolVar(&f.rm, "rm", false, "remove the container when it exits")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep stdin open and send it to the container")
	fl.BoolVarP(&f.tty, "tty", "t", false, "give the container a terminal")
	fl.StringVar(&f.name, "name", "", "name of the container (unique on this host)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable KEY=VALUE (repeatable)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "user (name|uid[:group|gid])")
	fl.StringArrayVarP(&f.ports, "publish", "p", nil, "publish a port [HOSTIP:]HOSTPORT:PORT[/tcp|udp] (repeatable)")
	fl.StringVar(&f.network, "network", "", "network: a network name, host, none or container:NAME (default bridge)")
	fl.StringVar(&f.network, "net", "", "alias of --network")
	fl.StringVar(&f.ip, "ip", "", "static IPv4 address on the network")
	fl.StringVar(&f.hostname, "hostname", "", "hostname of the container (default: its short ID)")
	fl.StringArrayVar(&f.aliases, "network-alias", nil, "another DNS name of the container on its --network, a user-defined network (repeatable; several containers may share one)")
	fl.StringArrayVar(&f.dns, "dns", nil, "nameserver address (repeatable); on a user-defined network the resolver at 127.0.0.11 forwards to it, elsewhere it goes into resolv.conf")
	fl.StringArrayVar(&f.dnsSearch, "dns-search", nil, "DNS search domain for resolv.conf (repeatable; \".\" for none)")
	fl.StringArrayVar(&f.dnsOptions, "dns-option", nil, "resolv.conf option such as ndots:2 or edns0 (repeatable)")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit (e.g. 256m, 1g)")
	fl.Float64Var(&f.cpus, "cpus", 0, "number of CPUs (e.g. 0.5)")
	fl.Int64Var(&f.pidsLimit, "pids-limit", 0, "maximum number of processes (0: no limit)")
	fl.StringArrayVar(&f.capAdd, "cap-add", nil, "add a Linux capability (repeatable; ALL)")
	fl.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a Linux capability (repeatable; ALL)")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the container's root filesystem read-only")
	fl.BoolVar(&f.privileged, "privileged", false, "give every capability and device access, no masked paths")
	fl.StringArrayVar(&f.logOpts, "log-opt", nil, "log option KEY=VALUE (repeatable): max-size=SIZE (rotate at, default 10m), max-file=N (files kept, default 3)")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind-mount HOSTPATH:CONTAINERPATH[:ro], or mount the named volume NAME:CONTAINERPATH[:ro] (created when missing; repeatable)")
	f.mountFlags.register(cmd)
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	f.proc.register(fl)
	f.registerRestart(fl)
}

// request turns the flags and arguments (IMAGE [COMMAND [ARG...]]) into a create request.
func (f *runFlags) request(args []string) (api.ContainerCreate, error) {
	req := api.ContainerCreate{
		Name: f.name, Image: args[0], Cmd: args[1:], Env: f.env, WorkingDir: f.workdir, User: f.user,
		Hostname: f.hostname, Tty: f.tty, OpenStdin: f.interactive, AutoRemove: f.rm, Network: f.network,
		IP: f.ip, PidsLimit: f.pidsLimit, CapAdd: f.capAdd, CapDrop: f.capDrop, ReadOnly: f.readOnly,
		Privileged: f.privileged, NetworkAliases: f.aliases, DNS: f.dns, DNSSearch: f.dnsSearch, DNSOptions: f.dnsOptions,
	}
	if f.entrypoint != "" {
		req.Entrypoint = []string{f.entrypoint}
	}
	ports, err := api.ParsePortSpecs(f.ports)
	if err != nil {
		return req, err
	}
	for _, m := range ports {
		req.Ports = append(req.Ports, m.Wire())
	}
	for _, v := range f.volumes {
		m, err := api.ParseMount(v)
		if err != nil {
			return req, err
		}
		req.Mounts = append(req.Mounts, m)
	}
	if err := f.mountFlags.apply(&req); err != nil {
		return req, err
	}
	for _, o := range f.logOpts {
		k, v, ok := strings.Cut(o, "=")
		if !ok || k == "" {
			return req, fmt.Errorf("--log-opt %q: use KEY=VALUE, e.g. max-size=10m or max-file=3: %w", o, errdefs.ErrInvalidArgument)
		}
		if req.LogOpts == nil {
			req.LogOpts = map[string]string{}
		}
		req.LogOpts[k] = v
	}
	if f.memory != "" {
		n, err := parseBytes(f.memory)
		if err != nil {
			return req, err
		}
		req.Memory = n
	}
	if f.cpus < 0 {
		return req, fmt.Errorf("--cpus %v must not be negative: %w", f.cpus, errdefs.ErrInvalidArgument)
	}
	req.NanoCPUs = int64(f.cpus * 1e9)
	if err := f.proc.apply(&req); err != nil {
		return req, err
	}
	if err := f.applyRestart(&req); err != nil {
		return req, err
	}
	return req, req.Validate()
}

// parseBytes parses sizes such as 512, 100k, 256m, 1g.
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "m"):
		mult, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "g"):
		mult, t = 1<<30, t[:len(t)-1]
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: use a number with an optional unit k, m or g, e.g. 256m: %w", s, errdefs.ErrInvalidArgument)
	}
	return int64(n * float64(mult)), nil
}

// engineError wraps an error of the agent for run/exec: docker's codes (125, or 126/127 when the
// command could not be run).
func engineError(err error) error {
	var ce *client.ExitCodeError
	if errors.As(err, &ce) {
		return &exitError{code: ce.Code, err: err}
	}
	return &exitError{code: 125, err: err}
}

func newRunCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Create and start a container; without -d, stream its output and exit with its exit code",
		Long: `Create and start a container. IMAGE is an image of ` + "`ovctl image ls`" + ` or an absolute path to a rootfs
directory. Without -d, ovctl streams the container's output and exits with its exit code; engine errors
exit 125, a command that cannot be invoked 126, one not found 127.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(args)
			if err != nil {
				return &exitError{code: 125, err: err}
			}
			return runContainer(cmd.Context(), g.agent(), req, f.detach)
		},
	}
	f.register(cmd, true)
	cmd.SetFlagErrorFunc(flagError125)
	return cmd
}

// flagError125 makes a flag error of run and create exit 125, as docker's do.
func flagError125(cmd *cobra.Command, err error) error {
	return &exitError{code: 125, err: fmt.Errorf("%w\nSee 'ovctl %s --help'", err, cmd.Name())}
}

func newCreateCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "create [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Create a container without starting it; print its ID",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(args)
			if err != nil {
				return &exitError{code: 125, err: err}
			}
			c, err := createPulling(cmd.Context(), g.agent(), req)
			if err != nil {
				return engineError(err)
			}
			fmt.Println(c.ID)
			return nil
		},
	}
	f.register(cmd, false)
	cmd.SetFlagErrorFunc(flagError125)
	return cmd
}

func newStartCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "start CONTAINER...",
		Short: "Start created or exited containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainer(args, func(id string) error {
				_, err := g.agent().Start(cmd.Context(), id)
				return err
			})
		},
	}
}

func runContainer(ctx context.Context, cl *client.Client, req api.ContainerCreate, detach bool) error {
	c, err := createPulling(ctx, cl, req)
	if err != nil {
		return engineError(err)
	}
	if detach {
		if _, err := cl.Start(ctx, c.ID); err != nil {
			return engineError(err)
		}
		fmt.Println(c.ID)
		return nil
	}
	conn, br, err := cl.Attach(ctx, c.ID)
	if err != nil {
		_ = cl.Remove(context.Background(), c.ID, true)
		return engineError(err)
	}
	defer conn.Close()
	fw := api.NewFrameWriter(conn)
	restore := func() {}
	if req.Tty {
		restore = setupTerminal(fw, func(ws api.Winsize) error { return fw.WriteJSON(api.FrameResize, ws) })
	}
	if _, err := cl.Start(ctx, c.ID); err != nil {
		restore()
		if req.AutoRemove {
			_ = cl.Remove(context.Background(), c.ID, true)
		}
		return engineError(err)
	}
	if req.OpenStdin {
		go pumpStdin(fw)
	}
	if !req.Tty {
		stopProxy := proxySignals(cl, c.ID)
		defer stopProxy()
	}
	exit, streamErr := readStream(br)
	restore()
	if streamErr != nil {
		// The stream broke (agent restarted?): ask for the exit instead.
		e, err := cl.Wait(ctx, c.ID, false)
		if err != nil {
			return &exitError{code: 125, err: fmt.Errorf("lost the container's stream: %v; and its exit: %w", streamErr, err)}
		}
		exit = e
	}
	// Return once the agent has recorded the exit (or removed the container), so that the next
	// command sees it.
	if _, err := cl.Wait(ctx, c.ID, req.AutoRemove); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		fmt.Fprintln(os.Stderr, "ovctl: waiting for the container:", err)
	}
	if exit.Error != "" {
		return &exitError{code: exit.ExitCode, err: errors.New(exit.Error)}
	}
	if exit.ExitCode != 0 {
		return &exitError{code: exit.ExitCode}
	}
	return nil
}

// readStream copies output frames to stdout/stderr until the exit frame.
func readStream(r io.Reader) (api.Exit, error) {
	for {
		t, p, err := api.ReadFrame(r)
		if err != nil {
			return api.Exit{}, fmt.Errorf("stream ended without an exit: %w", err)
		}
		switch t {
		case api.FrameStdout:
			_, _ = os.Stdout.Write(p)
		case api.FrameStderr:
			_, _ = os.Stderr.Write(p)
		case api.FrameExit:
			var e api.Exit
			if err := json.Unmarshal(p, &e); err != nil {
				return api.Exit{}, err
			}
			return e, nil
		case api.FrameError:
			var e api.Error
			_ = json.Unmarshal(p, &e)
			return api.Exit{ExitCode: 125, Error: e.Message}, nil
		}
	}
}

// pumpStdin sends stdin as frames, then the end of input.
func pumpStdin(fw *api.FrameWriter) {
	buf := make([]byte, 32<<10)
	for {
		n, err := os.Stdin.Read(buf)
		if n > 0 {
			if fw.Write(api.FrameStdin, buf[:n]) != nil {
				return
			}
		}
		if err != nil {
			_ = fw.Write(api.FrameCloseStdin, nil)
			return
		}
	}
}

// proxySignals forwards SIGINT, SIGTERM and SIGHUP to the container (docker's sig-proxy).
func proxySignals(cl *client.Client, id string) func() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				_ = cl.Kill(context.Background(), id, strconv.Itoa(int(s.(syscall.Signal))))
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

func eachContainer(ids []string, fn func(id string) error) error {
	var failed error
	for _, id := range ids {
		if err := fn(id); err != nil {
			fmt.Fprintln(os.Stderr, "ovctl:", err)
			failed = &exitError{code: 1}
			continue
		}
		fmt.Println(id)
	}
	return failed
}

func newPsCmd(g *globals) *cobra.Command {
	var all, quiet bool
	var output, format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "ps [-a] [-q] [-o json] [--filter KEY=VALUE] [--format TEMPLATE]",
		Short: "List containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter, err := parsePsFilter(filters)
			if err != nil {
				return err
			}
			cs, err := g.agent().List(cmd.Context(), all || filter.needsAll())
			if err != nil {
				return err
			}
			cs = filter.apply(cs)
			if output == "json" {
				return printJSON(cs)
			}
			if format != "" && !quiet {
				return writeFormatted(os.Stdout, format, psTable, psHeaders, psRows(cs))
			}
			if quiet {
				for _, c := range cs {
					fmt.Println(api.ShortID(c.ID))
				}
				return nil
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNETWORKS\tNAMES")
			for _, c := range cs {
				var nets, ports []string
				for _, n := range c.Networks {
					nets = append(nets, n.Network+"="+n.IP)
				}
				for _, p := range c.Config.Ports {
					ports = append(ports, p.String())
				}
				cmdline := strings.Join(c.Command, " ")
				if len(cmdline) > 24 {
					cmdline = cmdline[:21] + "..."
				}
				fmt.Fprintf(tw, "%s\t%s\t%q\t%s\t%s\t%s\t%s\t%s\n", api.ShortID(c.ID), c.Image, cmdline, ago(c.Created),
					containerStatus(c), strings.Join(ports, ","), strings.Join(nets, ","), c.Name)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show every container (default: running ones)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only IDs")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "show only containers that match KEY=VALUE: id, name, label=KEY[=VALUE], status, exited (repeatable)")
	cmd.Flags().StringVar(&format, "format", "", formatHelp)
	return cmd
}

// containerStatus is status with why the agent has no record of the container, if it has none.
func containerStatus(c api.Container) string {
	if c.Quarantine == "" {
		return status(c.State)
	}
	s := status(c.State)
	if c.State.Status == api.StateUnknown {
		s = "unknown"
	}
	return s + " (record quarantined: " + c.Quarantine + ")"
}

func status(st api.ContainerState) string {
	switch st.Status {
	case api.StateRunning:
		return "Up " + since(st.StartedAt)
	case api.StateExited:
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, since(st.FinishedAt))
	case api.StateRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, since(st.FinishedAt))
	}
	return "Created"
}

func since(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return humanDuration(time.Since(t))
}

// humanDuration is docker's (go-units HumanDuration): 3 seconds, About a minute, 5 hours, 3 weeks.
func humanDuration(d time.Duration) string {
	seconds, minutes, hours := int(d.Seconds()), int(d.Minutes()), int(d.Hours()+0.5)
	switch {
	case seconds < 1:
		return "Less than a second"
	case seconds == 1:
		return "1 second"
	case seconds < 60:
		return fmt.Sprintf("%d seconds", seconds)
	case minutes == 1:
		return "About a minute"
	case minutes < 60:
		return fmt.Sprintf("%d minutes", minutes)
	case hours == 1:
		return "About an hour"
	case hours < 48:
		return fmt.Sprintf("%d hours", hours)
	case hours < 24*7*2:
		return fmt.Sprintf("%d days", hours/24)
	case hours < 24*30*2:
		return fmt.Sprintf("%d weeks", hours/24/7)
	case hours < 24*365*2:
		return fmt.Sprintf("%d months", hours/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

func ago(t time.Time) string { return since(t) + " ago" }

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newLogsCmd(g *globals) *cobra.Command {
	var follow bool
	var tail string
	cmd := &cobra.Command{
		Use:   "logs [-f] [--tail N] CONTAINER",
		Short: "Print a container's output (stdout and stderr)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := api.ParseTail(tail)
			if err != nil {
				return fmt.Errorf("--tail: %w", err)
			}
			rc, err := g.agent().Logs(cmd.Context(), args[0], follow, n)
			if err != nil {
				return err
			}
			defer rc.Close()
			for {
				t, p, err := api.ReadFrame(rc)
				if err != nil {
					return nil
				}
				if t == api.FrameStderr {
					_, _ = os.Stderr.Write(p)
				} else {
					_, _ = os.Stdout.Write(p)
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the container exits")
	cmd.Flags().StringVar(&tail, "tail", "all", "print only the last N lines")
	return cmd
}

func newExecCmd(g *globals) *cobra.Command {
	var cfg api.ExecConfig
	cmd := &cobra.Command{
		Use:   "exec [-i] [-t] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container; exit with its exit code",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Cmd = args[1:]
			cl := g.agent()
			conn, br, err := cl.Exec(cmd.Context(), args[0], cfg)
			if err != nil {
				return engineError(err)
			}
			defer conn.Close()
			return streamExec(conn, br, cfg)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&cfg.Stdin, "interactive", "i", false, "keep stdin open and send it to the process")
	fl.BoolVarP(&cfg.Tty, "tty", "t", false, "give the process a terminal")
	fl.StringArrayVarP(&cfg.Env, "env", "e", nil, "set an environment variable KEY=VALUE")
	fl.StringVarP(&cfg.User, "user", "u", "", "user (name|uid[:group|gid])")
	fl.StringVarP(&cfg.WorkingDir, "workdir", "w", "", "working directory")
	return cmd
}

func streamExec(conn net.Conn, br *bufio.Reader, cfg api.ExecConfig) error {
	fw := api.NewFrameWriter(conn)
	restore := func() {}
	if cfg.Tty {
		restore = setupTerminal(fw, func(ws api.Winsize) error { return fw.WriteJSON(api.FrameResize, ws) })
	}
	if cfg.Stdin {
		go pumpStdin(fw)
	}
	exit, err := readStream(br)
	restore()
	if err != nil {
		return &exitError{code: 125, err: err}
	}
	if exit.Error != "" {
		return &exitError{code: exit.ExitCode, err: errors.New(exit.Error)}
	}
	if exit.ExitCode != 0 {
		return &exitError{code: exit.ExitCode}
	}
	return nil
}

func newStopCmd(g *globals) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [-t SECONDS] CONTAINER...",
		Short: "Stop containers: their stop signal (default SIGTERM), then SIGKILL after the timeout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("time") {
				timeout = -1 // the container's --stop-timeout (default 10)
			}
			return eachContainer(args, func(id string) error {
				return g.agent().Stop(cmd.Context(), id, time.Duration(timeout)*time.Second)
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing (default: the container's --stop-timeout, 10)")
	return cmd
}

func newKillCmd(g *globals) *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [-s SIGNAL] CONTAINER...",
		Short: "Send a signal (default KILL) to containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainer(args, func(id string) error { return g.agent().Kill(cmd.Context(), id, sig) })
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal name or number")
	return cmd
}

func newRmCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [-f] CONTAINER...",
		Short: "Remove containers (-f: even running ones)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachContainer(args, func(id string) error { return g.agent().Remove(cmd.Context(), id, force) })
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	cmd.Flags().BoolP("volumes", "v", false, "remove the container's anonymous volumes: ov has none, and named volumes are kept (as docker keeps them)")
	return cmd
}

func newInspectCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect CONTAINER...",
		Short: "Show containers as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.Container
			for _, id := range args {
				c, err := g.agent().Inspect(cmd.Context(), id)
				if err != nil {
					return err
				}
				out = append(out, c)
			}
			if format != "" {
				return writeInspect(os.Stdout, format, toRows(out))
			}
			return printJSON(out)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format each container with a Go template, e.g. '{{.State.Status}}' or '{{json .Config}}' (fields as api.Container names them)")
	return cmd
}

func newWaitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER",
		Short: "Wait for a container to exit and print its exit code",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.agent().Wait(cmd.Context(), args[0], false)
			if err != nil {
				return err
			}
			fmt.Println(e.ExitCode)
			return nil
		},
	}
}

func newVersionCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version [-f json|TEMPLATE]",
		Short: "Show the versions of ovctl and of the agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printVersion(cmd.Context(), g, format)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "json, or a Go template such as '{{.Server.Version}}' or '{{json .}}'")
	return cmd
}
