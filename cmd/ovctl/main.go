// Command ovctl is ov's command line, shaped like the docker CLI: containers, images and networks of
// the local agent (over its unix socket), and cluster-wide operations through the controller.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/ovnet/ov/internal/agent/client"
)

// exitError makes ovctl exit with a given code (a container's exit code, or docker's 125/126/127).
type exitError struct {
	code int
	err  error // nil: exit silently
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// globals are the root command's flags, shared by every subcommand.
type globals struct {
	v *viper.Viper
}

// agent returns a client of the local agent.
func (g *globals) agent() *client.Client { return client.New(g.v.GetString("socket")) }

func newRootCmd() *cobra.Command {
	g := &globals{v: viper.New()}
	root := &cobra.Command{
		Use:           "ovctl",
		Short:         "Drive ov: containers, images and networks on this host; cluster-wide operations",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.String("socket", client.DefaultSocket, "the local agent's API socket (env OV_SOCKET)")
	pf.String("controller", "", "the controller's URL for cluster-wide commands, e.g. https://10.0.0.1:7480 (env OV_CONTROLLER)")
	pf.String("token", "", "the controller's admin token (env OV_TOKEN)")
	_ = g.v.BindPFlags(pf)
	g.v.SetEnvPrefix("OV")
	g.v.AutomaticEnv()

	root.AddCommand(
		newRunCmd(g), newCreateCmd(g), newStartCmd(g), newPsCmd(g), newLogsCmd(g), newExecCmd(g),
		newStopCmd(g), newKillCmd(g), newRmCmd(g), newInspectCmd(g), newWaitCmd(g),
		newImageCmd(g), newNetworkCmd(g), newVersionCmd(g), newApplyCmd(g.cluster),
		newNodeCmd(g), newVolumeCmd(g),
	)
	root.AddCommand(append(registryCmds(g), newLoginCmd(g), newLogoutCmd())...)
	return root
}

func main() {
	root := newRootCmd()
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "ovctl:", ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "ovctl:", err)
	os.Exit(1)
}
