package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/ovnet/ov/deploy"
)

// TestExampleConfig: deploy/examples/agent.yaml is read by ovagent as written, names only its flags,
// and lists every flag; its commented-out examples are valid too.
func TestExampleConfig(t *testing.T) {
	problems, err := deploy.ConfigProblems("../../deploy/examples/agent.yaml", func() *pflag.FlagSet { return newRootCmd().Flags() }, readConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Errorf("deploy/examples/agent.yaml is out of date with ovagent's flags:\n%s", strings.Join(problems, "\n"))
	}
}
