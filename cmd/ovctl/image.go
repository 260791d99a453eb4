package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/api"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage the local agent's images"}
	cmd.AddCommand(newImageLoadCmd(g), newImageImportCmd(g), newImageLsCmd(g), newImageRmCmd(g))
	cmd.AddCommand(registryCmds(g)...)
	return cmd
}

// progressReader counts what was read and, on a terminal, draws the upload's progress.
type progressReader struct {
	r     io.Reader
	read  atomic.Int64
	total int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.read.Add(int64(n))
	return n, err
}

// showProgress draws p's progress on stderr every 200ms until stop is closed.
func showProgress(p *progressReader, what string) (stop func()) {
	if !isTerminal(os.Stderr) {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	draw := func() {
		r := p.read.Load()
		if p.total > 0 {
			fmt.Fprintf(os.Stderr, "\r%s: %6.1f / %.1f MiB (%3d%%)", what, float64(r)/(1<<20), float64(p.total)/(1<<20), r*100/p.total)
		} else {
			fmt.Fprintf(os.Stderr, "\r%s: %6.1f MiB", what, float64(r)/(1<<20))
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				draw()
			case <-done:
				draw()
				fmt.Fprintln(os.Stderr)
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

// openInput opens FILE (or stdin for "" and "-") with its size when known.
func openInput(path string) (io.ReadCloser, int64, error) {
	if path == "" || path == "-" {
		return io.NopCloser(os.Stdin), 0, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func newImageLoadCmd(g *globals) *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a docker save or OCI image archive (streamed to the agent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, size, err := openInput(input)
			if err != nil {
				return err
			}
			defer f.Close()
			pr := &progressReader{r: f, total: size}
			stop := showProgress(pr, "Loading")
			imgs, err := g.agent().LoadImages(cmd.Context(), pr, size)
			stop()
			if err != nil {
				return err
			}
			for _, img := range imgs {
				if len(img.Refs) == 0 {
					fmt.Println("Loaded image ID:", img.ID)
				}
				for _, r := range img.Refs {
					fmt.Println("Loaded image:", r)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "archive file (default: standard input)")
	return cmd
}

func newImageImportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import ROOTFS.tar|- NAME[:TAG]",
		Short: "Make an image of a rootfs tarball",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, size, err := openInput(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			pr := &progressReader{r: f, total: size}
			stop := showProgress(pr, "Importing")
			img, err := g.agent().ImportImage(cmd.Context(), pr, size, args[1])
			stop()
			if err != nil {
				return err
			}
			fmt.Println(img.ID)
			return nil
		},
	}
}

func newImageLsCmd(g *globals) *cobra.Command {
	var output, format string
	cmd := &cobra.Command{
		Use:     "ls [-o json] [--format TEMPLATE]",
		Aliases: []string{"list"},
		Short:   "List images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			imgs, err := g.agent().Images(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(imgs)
			}
			if format != "" {
				return writeFormatted(os.Stdout, format, imageTable, imageHeaders, imageLsRows(imgs))
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			for _, img := range imgs {
				id := api.ShortID(strings.TrimPrefix(img.ID, "sha256:"))
				refs := img.Refs
				if len(refs) == 0 {
					refs = []string{"<none>:<none>"}
				}
				for _, r := range refs {
					i := strings.LastIndex(r, ":")
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fMB\n", r[:i], r[i+1:], id, sinceTime(img.Created), float64(img.Size)/1e6)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	cmd.Flags().StringVar(&format, "format", "", formatHelp)
	return cmd
}

func newImageRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm IMAGE...",
		Short: "Remove images (refused while a container uses one)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var failed error
			for _, ref := range args {
				rm, err := g.agent().RemoveImage(context.WithoutCancel(cmd.Context()), ref)
				if err != nil {
					fmt.Fprintln(os.Stderr, "ovctl:", err)
					failed = &exitError{code: 1}
					continue
				}
				for _, t := range rm.Untagged {
					fmt.Println("Untagged:", t)
				}
				if rm.Deleted != "" {
					fmt.Println("Deleted:", rm.Deleted)
				}
			}
			return failed
		},
	}
}
