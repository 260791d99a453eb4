// Package perfdoc writes benchmark tables into docs/performance.md. Each benchmark owns one section,
// delimited by HTML comments, and replaces only that section, so benchmarks of different components
// can run in any order and leave each other's figures alone.
package perfdoc

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// Machine describes the machine a benchmark ran on, for the line under each table.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if i := strings.Index(l, ":"); i >= 0 {
					model = strings.TrimSpace(l[i+1:])
				}
				break
			}
		}
	}
	kernel := "linux"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d cores, %s, %s, measured %s", model, runtime.NumCPU(), kernel, runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

// WriteSection replaces (or appends) the section named name in the markdown file at path with body.
func WriteSection(path, name, body string) error {
	begin := "<!-- BEGIN " + name + " -->"
	end := "<!-- END " + name + " -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	if text == "" {
		text = "# Performance\n\nEvery figure here was measured by `make bench` beside its reference, in the same run, on the machine named under each table.\n"
	}
	section := begin + "\n" + strings.TrimSpace(body) + "\n" + end
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i >= 0 && j > i {
		text = text[:i] + section + text[j+len(end):]
	} else {
		text = strings.TrimRight(text, "\n") + "\n\n" + section + "\n"
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
