// Package shimcmd is the command line of the per-container shim (runtime/shim), shared by the small
// ovshim binary the agent starts by default and the hidden `ovagent shim` subcommand.
package shimcmd

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/internal/shim"
)

// New returns the shim's command; sub names it "shim" (an ovagent subcommand, hidden) rather than
// "ovshim".
func New(sub bool) *cobra.Command {
	var cfg shim.Config
	var debugLog string
	cmd := &cobra.Command{
		Use:          "ovshim",
		Short:        "the per-container shim (started by ovagent)",
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = slog.New(slog.DiscardHandler)
			if debugLog != "" {
				if f, err := os.OpenFile(debugLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
					defer f.Close()
					cfg.Log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
				}
			}
			// Signals to the agent's process group never reach the shim (own session); ignore the
			// ones a terminal could still send.
			signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE)
			ready := os.NewFile(3, "ready")
			return shim.Run(context.Background(), cfg, ready)
		},
	}
	if sub {
		cmd.Use, cmd.Hidden = "shim", true
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "container ID")
	f.StringVar(&cfg.Bundle, "bundle", "", "OCI bundle directory")
	f.StringVar(&cfg.Runtime, "runtime", "", "OCI runtime binary")
	f.StringVar(&cfg.RuntimeRoot, "runtime-root", "", "the runtime's --root")
	f.StringVar(&cfg.Socket, "socket", "", "unix socket of the shim's API")
	f.StringVar(&cfg.LogPath, "log-path", "", "json-lines log of the container's output")
	f.Int64Var(&cfg.LogMaxSize, "log-max-size", 0, "rotate the log at this many bytes (0: never)")
	f.IntVar(&cfg.LogMaxFile, "log-max-file", 1, "log files kept, the current one included")
	f.StringVar(&cfg.ExitFile, "exit-file", "", "file the exit status is written to")
	f.BoolVar(&cfg.Tty, "tty", false, "the container has a terminal")
	f.BoolVar(&cfg.Stdin, "stdin", false, "keep the container's stdin open")
	f.StringVar(&debugLog, "debug-log", "", "the shim's own log file")
	return cmd
}
