// Package deploy holds ov's deployment files: the systemd units (systemd/) and the example configuration
// of the agent, the controller and a cluster (examples/). Its Go code checks that those files stay true
// to the binaries: the tests of cmd/ovagent and cmd/ovcontroller hand their flags and their config
// reader to ConfigProblems.
package deploy

import (
	"fmt"
	"os"
	"path/filepath"
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
//   - the daemon, reading the file with read (its own readConfigFile, given a viper bound to the flags
//     and with "config" set to the file), gets exactly the value written (an unquoted 0600 is the
//     number 384);
//   - every flag but "config" and "help" appears, as a key or as a commented-out key ("# name:"), so
//     that a new flag cannot be missing from the example;
//   - the commented-out keys pass the same checks once uncommented (with "#   - item" lines below a
//     commented-out key as its list), so that the optional examples cannot rot either.
//
// flags returns a fresh flag set of the daemon each time it is called.
func ConfigProblems(path string, flags func() *pflag.FlagSet, read func(*viper.Viper) error) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	problems, parsed, err := check(path, path, data, flags(), read, nil)
	if err != nil || !parsed {
		return problems, err
	}

	text := string(data)
	flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" || f.Hidden {
			return
		}
		if !regexp.MustCompile(`(?m)^(# ?)?` + regexp.QuoteMeta(f.Name) + `:`).MatchString(text) {
			problems = append(problems, fmt.Sprintf("%s: flag --%s is missing; add it with a comment (commented out if it has no useful default)", path, f.Name))
		}
	})

	alt, lines := uncomment(data, flags())
	if len(lines) == 0 {
		return problems, nil
	}
	dir, err := os.MkdirTemp("", "ov-config-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(tmp, alt, 0o600); err != nil {
		return nil, err
	}
	more, _, err := check(path, tmp, alt, flags(), read, lines)
	for _, p := range more {
		problems = append(problems, p+" (in a commented-out example)")
	}
	return problems, err
}

// check parses data (the content of file; name is used in messages) and checks its keys; parsed is
// false when the file is not a mapping the daemon can read at all. With only set, problems are reported
// only for keys on those lines.
func check(name, file string, data []byte, flags *pflag.FlagSet, read func(*viper.Viper) error, only map[int]bool) (problems []string, parsed bool, err error) {
	bad := func(line int, format string, args ...any) {
		if only == nil || only[line] {
			problems = append(problems, fmt.Sprintf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []string{fmt.Sprintf("%s: not YAML: %v", name, err)}, false, nil
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return []string{fmt.Sprintf("%s:1: the file must be one mapping of flag names to values", name)}, false, nil
	}

	v := viper.New()
	if err := v.BindPFlags(flags); err != nil {
		return nil, false, err
	}
	v.Set("config", file)
	if err := read(v); err != nil {
		return []string{fmt.Sprintf("%s: the daemon cannot read it: %v", name, err)}, false, nil
	}

	top := doc.Content[0].Content
	for i := 0; i+1 < len(top); i += 2 {
		k, val := top[i], top[i+1]
		f := flags.Lookup(k.Value)
		if f == nil || k.Value == "config" {
			bad(k.Line, "key %q is not a flag the daemon reads from its file; remove it or fix its name", k.Value)
			continue
		}
		r, problem := compare(v, f, val)
		switch {
		case problem != "":
			bad(k.Line, "%s: %s", k.Value, problem)
		case r.written != r.got:
			bad(k.Line, "%s: written %s but the daemon reads %s; %s", k.Value, r.written, r.got, r.hint)
		default:
			if err := f.Value.Set(r.arg); err != nil {
				bad(k.Line, "%s: %q is not a valid --%s (%s): %v", k.Value, r.arg, f.Name, f.Value.Type(), err)
			}
		}
	}
	return problems, true, nil
}

// uncomment returns data with every commented-out key of a flag ("# name: value", and the "#   - item"
// lines right below it) uncommented, and the numbers of the lines holding those keys.
func uncomment(data []byte, flags *pflag.FlagSet) ([]byte, map[int]bool) {
	key := regexp.MustCompile(`^# ?([a-z0-9-]+):(\s.*)?$`)
	item := regexp.MustCompile(`^#(\s+- .*)$`)
	lines := strings.Split(string(data), "\n")
	keys := map[int]bool{}
	inKey := false
	for i, l := range lines {
		if m := key.FindStringSubmatch(l); m != nil && flags.Lookup(m[1]) != nil && m[1] != "config" {
			lines[i] = strings.TrimPrefix(strings.TrimPrefix(l, "#"), " ")
			keys[i+1] = true
			inKey = true
			continue
		}
		if m := item.FindStringSubmatch(l); m != nil && inKey {
			lines[i] = m[1]
			continue
		}
		inKey = false
	}
	return []byte(strings.Join(lines, "\n")), keys
}

// rendering is a value of the file as written and as the daemon read it, in the same form; arg is the
// value as a command-line argument of the flag, hint what to do when written and got differ.
type rendering struct{ written, got, arg, hint string }

// compare renders the value node of flag f; problem says what is wrong with the node's shape. Slice
// flags take a list (or one scalar, split at commas as on the command line), key=value flags a map,
// every other flag one scalar.
func compare(v *viper.Viper, f *pflag.Flag, n *yaml.Node) (r rendering, problem string) {
	typ := f.Value.Type()
	switch {
	case strings.HasSuffix(typ, "Slice") || strings.HasSuffix(typ, "Array"):
		items := strings.Split(n.Value, ",")
		if n.Kind == yaml.SequenceNode {
			items = nil
			for _, c := range n.Content {
				if c.Kind != yaml.ScalarNode {
					return r, "write a list of single values (- item)"
				}
				items = append(items, c.Value)
			}
		} else if n.Kind != yaml.ScalarNode {
			return r, "write a list of single values (- item)"
		}
		return rendering{fmt.Sprintf("%q", items), fmt.Sprintf("%q", v.GetStringSlice(f.Name)), strings.Join(items, ","), "write one item per line (- item)"}, ""
	case strings.HasPrefix(typ, "stringTo"):
		if n.Kind != yaml.MappingNode {
			return r, "write a map (key: value)"
		}
		var pairs []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i+1].Kind != yaml.ScalarNode {
				return r, "write a map of single values (key: value)"
			}
			pairs = append(pairs, n.Content[i].Value+"="+n.Content[i+1].Value)
		}
		sort.Strings(pairs)
		var read []string
		for k, val := range v.GetStringMapString(f.Name) {
			read = append(read, k+"="+val)
		}
		slices.Sort(read)
		return rendering{fmt.Sprintf("%q", pairs), fmt.Sprintf("%q", read), strings.Join(pairs, ","), "use lower-case keys (the daemon's reader folds case)"}, ""
	case n.Kind != yaml.ScalarNode:
		return r, "write a single value"
	}
	return rendering{fmt.Sprintf("%q", n.Value), fmt.Sprintf("%q", v.GetString(f.Name)), n.Value, "quote the value"}, ""
}
