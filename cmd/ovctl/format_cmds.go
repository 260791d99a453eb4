package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/ovnet/ov/api"
)

const formatHelp = "format with a Go template as docker does: 'table {{.ID}}\\t{{.Names}}', '{{json .}}', or json (one object a line); see docs/cli-format.md"

// psTable is the template of `ps --format table`.
const psTable = "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"

func psRows(cs []api.Container) []any {
	out := make([]any, len(cs))
	for i, c := range cs {
		out[i] = newPsRow(c)
	}
	return out
}

// writeInspect renders inspected objects with --format: json or a template, a line each (no table).
func writeInspect(w io.Writer, format string, objs []any) error {
	if format != "json" && strings.HasPrefix(format, "table") {
		return &exitError{code: 1, err: fmt.Errorf("--format: inspect does not print tables; give a template such as '{{.State.Status}}' or json")}
	}
	return writeFormatted(w, format, "", nil, objs)
}

// versionInfo is what `ovctl version --format` sees: {{.Client.Version}}, {{.Server.GoVersion}}...
type versionInfo struct {
	Client api.Version
	Server *api.Version `json:",omitempty"` // nil: the agent did not answer
}

// printVersion prints ovctl's and the agent's versions as docker prints its own: text by default,
// json or a template with format. An agent that cannot be reached is an error after the client's part.
func printVersion(ctx context.Context, g *globals, format string) error {
	v := versionInfo{Client: api.WithBuildInfo(api.Version{Version: api.ReleaseVersion, APIVersion: api.AgentAPIVersion})}
	sv, err := g.agent().Version(ctx)
	if err == nil {
		v.Server = &sv
	}
	if format != "" {
		if ferr := writeInspect(os.Stdout, format, []any{v}); ferr != nil {
			return ferr
		}
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 1, ' ', 0)
	fmt.Fprintln(tw, "Client:")
	versionLines(tw, " ", v.Client)
	if v.Server != nil {
		fmt.Fprintln(tw, "\nServer:\n Engine:")
		versionLines(tw, "  ", *v.Server)
		fmt.Fprintf(tw, "  Runtime:\t%s\n", v.Server.Runtime)
		if v.Server.Host != "" {
			fmt.Fprintf(tw, "  Host:\t%s\n", v.Server.Host)
		}
	}
	if ferr := tw.Flush(); ferr != nil {
		return ferr
	}
	return err
}

func versionLines(w io.Writer, indent string, v api.Version) {
	or := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	fmt.Fprintf(w, "%sVersion:\t%s\n", indent, v.Version)
	fmt.Fprintf(w, "%sAPI version:\t%s\n", indent, v.APIVersion)
	fmt.Fprintf(w, "%sGo version:\t%s\n", indent, or(v.GoVersion))
	fmt.Fprintf(w, "%sGit commit:\t%s\n", indent, or(v.GitCommit))
	fmt.Fprintf(w, "%sOS/Arch:\t%s/%s\n", indent, or(v.Os), or(v.Arch))
}

// imageTable and networkTable are the templates of `image ls --format table` and `network ls --format table`.
const (
	imageTable   = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
	networkTable = "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
	volumeTable  = "{{.Driver}}\t{{.Name}}"
)

func imageLsRows(imgs []api.Image) []any {
	var out []any
	for _, img := range imgs {
		for _, r := range imageRows(img) {
			out = append(out, r)
		}
	}
	return out
}

func networkRows(nets []api.Network) []any {
	out := make([]any, len(nets))
	for i, n := range nets {
		out[i] = newNetworkRow(n)
	}
	return out
}
