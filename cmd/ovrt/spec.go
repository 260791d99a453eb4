package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/internal/ovrt/spec"
)

func newSpec() *cobra.Command {
	var bundle, id string
	var terminal bool
	c := &cobra.Command{
		Use:   "spec [flags]",
		Short: "Write a default config.json (Docker's defaults: capabilities, seccomp, masked paths) into the bundle",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			s, err := spec.Default(spec.Options{ID: id, Args: []string{"sh"}, Terminal: terminal})
			if err != nil {
				return err
			}
			path := filepath.Join(bundle, "config.json")
			if _, err := os.Stat(path); err == nil {
				return fmt.Errorf("%s exists; remove it first", path)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			b, err := json.MarshalIndent(s, "", "\t")
			if err != nil {
				return err
			}
			return os.WriteFile(path, append(b, '\n'), 0o644)
		},
	}
	c.Flags().StringVarP(&bundle, "bundle", "b", ".", "bundle directory to write config.json into")
	c.Flags().StringVar(&id, "id", "ovrt", "container id the spec is made for (hostname, cgroup /ov/<id>)")
	c.Flags().BoolVarP(&terminal, "terminal", "t", false, "set process.terminal (then create needs --console-socket)")
	return c
}
