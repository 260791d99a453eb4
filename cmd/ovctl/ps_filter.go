package main

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// psFilter is `ps --filter KEY=VALUE` as docker's: id (prefix), name (regular expression), label
// (KEY or KEY=VALUE), status (created, running, exited, ...) and exited (exit code). Values of one
// key are alternatives; different keys, and every label, must all match.
type psFilter map[string][]string

var psFilterKeys = []string{"id", "name", "label", "status", "exited"}

func parsePsFilter(args []string) (psFilter, error) {
	f := psFilter{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || !slices.Contains(psFilterKeys, k) {
			return nil, fmt.Errorf("--filter %q: use KEY=VALUE with KEY one of %s: %w", a, strings.Join(psFilterKeys, ", "), errdefs.ErrInvalidArgument)
		}
		switch k {
		case "name":
			if _, err := regexp.Compile(v); err != nil {
				return nil, fmt.Errorf("--filter %q: not a regular expression: %v: %w", a, err, errdefs.ErrInvalidArgument)
			}
		case "status":
			if !slices.Contains([]string{"created", "restarting", "running", "removing", "paused", "exited", "dead"}, v) {
				return nil, fmt.Errorf("--filter %q: status is one of created, restarting, running, removing, paused, exited, dead: %w", a, errdefs.ErrInvalidArgument)
			}
		case "exited":
			if _, err := strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("--filter %q: exited takes an exit code: %w", a, errdefs.ErrInvalidArgument)
			}
		}
		f[k] = append(f[k], v)
	}
	return f, nil
}

// needsAll reports whether the filter asks for containers that are not running (docker's ps then
// lists them without -a).
func (f psFilter) needsAll() bool { return len(f["status"]) > 0 || len(f["exited"]) > 0 }

func (f psFilter) apply(cs []api.Container) []api.Container {
	if len(f) == 0 {
		return cs
	}
	var out []api.Container
	for _, c := range cs {
		if f.match(c) {
			out = append(out, c)
		}
	}
	return out
}

func (f psFilter) match(c api.Container) bool {
	for _, l := range f["label"] {
		k, v, hasValue := strings.Cut(l, "=")
		got, ok := c.Config.Labels[k]
		if !ok || (hasValue && got != v) {
			return false
		}
	}
	anyOf := func(key string, fn func(string) bool) bool {
		vs := f[key]
		if len(vs) == 0 {
			return true
		}
		for _, v := range vs {
			if fn(v) {
				return true
			}
		}
		return false
	}
	return anyOf("id", func(v string) bool { return strings.HasPrefix(c.ID, v) }) &&
		anyOf("name", func(v string) bool { ok, _ := regexp.MatchString(v, c.Name); return ok }) &&
		anyOf("status", func(v string) bool { return c.State.Status == v }) &&
		anyOf("exited", func(v string) bool {
			return c.State.Status == api.StateExited && strconv.Itoa(c.State.ExitCode) == v
		})
}
