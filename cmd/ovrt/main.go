// Command ovrt is ov's OCI runtime command line, compatible with runc's for what tools drive:
// create, start, state, kill, delete, run, exec, ps, list and spec, with the global --root, and
// runc's --log, --log-format, --debug accepted. See docs/runtime.md.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/internal/atomicfile"
	"github.com/ovnet/ov/internal/ovrt"
)

func main() {
	// The container init and exec helpers are this binary started in a special mode.
	ovrt.Init()
	os.Exit(execute(os.Args[1:]))
}

// exitError carries the exit code of a container process (run, exec) to main.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// globals are runc's global flags.
type globals struct {
	root          string
	logPath       string
	logFormat     string
	debug         bool
	systemdCgroup bool
	log           *slog.Logger
	logFile       io.Closer
}

func execute(args []string) int {
	g := &globals{}
	root := newRoot(g)
	root.SetArgs(args)
	err := root.Execute()
	if g.logFile != nil {
		defer g.logFile.Close()
	}
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if g.log != nil {
		g.log.Error(err.Error())
	}
	fmt.Fprintln(os.Stderr, "ovrt:", err)
	return 1
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "ovrt",
		Short:         "ov's OCI container runtime",
		Long:          "ovrt runs OCI bundles (config.json and a root filesystem) as containers, with the command line of runc.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setup()
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&g.root, "root", "/run/ovrt", "directory holding the containers' state")
	f.StringVar(&g.logPath, "log", "", "write ovrt's log to this file (default stderr, errors only)")
	f.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	f.BoolVar(&g.debug, "debug", false, "log debug messages")
	f.BoolVar(&g.systemdCgroup, "systemd-cgroup", false, "not supported: ovrt manages cgroupfs paths itself")
	var ignored string
	f.StringVar(&ignored, "criu", "", "ignored (runc compatibility)")
	f.StringVar(&ignored, "rootless", "", "ignored (runc compatibility)")
	_ = f.MarkHidden("criu")
	_ = f.MarkHidden("rootless")
	root.AddCommand(newCreate(g), newStart(g), newState(g), newKill(g), newDelete(g), newRun(g),
		newExec(g), newPs(g), newList(g), newSpec())
	return root
}

func (g *globals) setup() error {
	if g.systemdCgroup {
		return errors.New("--systemd-cgroup is not supported: ovrt manages cgroups through cgroupfs paths (linux.cgroupsPath such as /ov/<id>); drop the flag")
	}
	if !filepath.IsAbs(g.root) {
		abs, err := filepath.Abs(g.root)
		if err != nil {
			return err
		}
		g.root = abs
	}
	level := slog.LevelInfo
	if g.debug {
		level = slog.LevelDebug
	}
	var w io.Writer = io.Discard
	if g.logPath != "" {
		f, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--log %s: %w", g.logPath, err)
		}
		w, g.logFile = f, f
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "json":
		g.log = slog.New(slog.NewJSONHandler(w, opts))
	case "text", "":
		g.log = slog.New(slog.NewTextHandler(w, opts))
	default:
		return fmt.Errorf("--log-format %q: use text or json", g.logFormat)
	}
	return nil
}

func (g *globals) runtime() (*ovrt.Runtime, error) {
	return ovrt.New(ovrt.Config{Root: g.root, Log: g.log})
}

func (g *globals) load(id string) (*ovrt.Container, error) {
	rt, err := g.runtime()
	if err != nil {
		return nil, err
	}
	return rt.Load(id)
}

// writePidFile writes pid to path atomically, as runc does (tools read it as soon as it exists), and
// without fsync, as runc does: the pid means nothing after a crash of the machine.
func writePidFile(path string, pid int) error {
	if path == "" {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(abs, []byte(fmt.Sprint(pid)), 0o644); err != nil {
		return fmt.Errorf("--pid-file: %w", err)
	}
	return nil
}
