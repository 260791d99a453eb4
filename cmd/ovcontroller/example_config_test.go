package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/ovnet/ov/deploy"
)

// TestExampleConfig: deploy/examples/controller.yaml is read by ovcontroller as written, names only its flags,
// and lists every flag; its commented-out examples are valid too.
func TestExampleConfig(t *testing.T) {
	problems, err := deploy.ConfigProblems("../../deploy/examples/controller.yaml", func() *pflag.FlagSet { return newRootCmd().Flags() }, readConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Errorf("deploy/examples/controller.yaml is out of date with ovcontroller's flags:\n%s", strings.Join(problems, "\n"))
	}
}
