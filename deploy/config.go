// Package deploy holds ov's deployment files: the systemd units (systemd/) and the example configuration
// of the agent, the controller and a cluster (examples/). Its Go code checks that those files stay true
// to the binaries: the tests of cmd/ovagent and cmd/ovcontroller hand their flags and their config
// reader to ConfigProblems.
package deploy

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// ConfigProblems checks the YAML configuration file at path against a daemon's flags and returns every
// problem found, each naming its line; none means the file is good. A daemon reads its YAML keys
// through viper under its flag names, so the file is good when:
//   - every key is a flag of the daemon (not "config"), and its value is a scalar, a list of scalars
//     (slice flags) or a map of scalars (key=value flags) that the flag accepts;
//   - the daemon, reading the file with read (its own readConfigFile, given a viper bound to flags and
//     with "config" set to path), gets exactly the value written (an unquoted 0600 is the number 384);
//   - every flag but "config" and "help" appears, as a key or as a commented-out key ("# name:"), so
//     that a new flag cannot be missing from the example.
//
// flags is modified (values are set while checking them); pass a fresh flag set.
func ConfigProblems(path string, flags *pflag.FlagSet, read func(*viper.Viper) error) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []string{fmt.Sprintf("%s: not YAML: %v", path, err)}, nil
	}
	var problems []string
	bad := func(line int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d: %s", path, line, fmt.Sprintf(format, args...)))
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		bad(1, "the file must be one mapping of flag names to values")
		return problems, nil
	}

	v := viper.New()
	if err := v.BindPFlags(flags); err != nil {
		return nil, err
	}
	v.Set("config", path)
	if err := read(v); err != nil {
		return []string{fmt.Sprintf("%s: the daemon cannot read it: %v", path, err)}, nil
	}

	top := doc.Content[0].Content
	for i := 0; i+1 < len(top); i += 2 {
		k, val := top[i], top[i+1]
		f := flags.Lookup(k.Value)
		if f == nil || k.Value == "config" {
			bad(k.Line, "key %q is not a flag the daemon reads from its file; remove it or fix its name", k.Value)
			continue
		}
		written, got, ok := compare(v, f, val)
		if !ok {
			bad(val.Line, "%s: the value must be a scalar, a list of scalars or a map of scalars", k.Value)
			continue
		}
		if written != got {
			bad(val.Line, "%s: written %q but the daemon reads %q; quote the value", k.Value, written, got)
			continue
		}
		if err := f.Value.Set(written); err != nil {
			bad(val.Line, "%s: %q is not a valid --%s (%s): %v", k.Value, written, f.Name, f.Value.Type(), err)
		}
	}

	text := string(data)
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" || f.Hidden {
			return
		}
		if !regexp.MustCompile(`(?m)^(# ?)?` + regexp.QuoteMeta(f.Name) + `:`).MatchString(text) {
			problems = append(problems, fmt.Sprintf("%s: flag --%s is missing; add it with a comment (commented out if it has no useful default)", path, f.Name))
		}
	})
	return problems, nil
}

// compare renders the value node as the flag would take it on the command line and what the daemon
// read for the flag in the same form.
func compare(v *viper.Viper, f *pflag.Flag, n *yaml.Node) (written, got string, ok bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		if f.Value.Type() == "stringSlice" {
			return n.Value, strings.Join(v.GetStringSlice(f.Name), ","), true
		}
		return n.Value, v.GetString(f.Name), true
	case yaml.SequenceNode:
		var items []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return "", "", false
			}
			items = append(items, c.Value)
		}
		return strings.Join(items, ","), strings.Join(v.GetStringSlice(f.Name), ","), true
	case yaml.MappingNode:
		var pairs []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i+1].Kind != yaml.ScalarNode {
				return "", "", false
			}
			pairs = append(pairs, n.Content[i].Value+"="+n.Content[i+1].Value)
		}
		sort.Strings(pairs)
		var read []string
		for k, val := range v.GetStringMapString(f.Name) {
			read = append(read, k+"="+val)
		}
		slices.Sort(read)
		return strings.Join(pairs, ","), strings.Join(read, ","), true
	}
	return "", "", false
}
