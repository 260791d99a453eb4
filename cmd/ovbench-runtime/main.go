// Command ovbench-runtime measures the start-to-exit latency of a container: `ovrt run` of
// /bin/true in a busybox bundle, beside `runc run` of the same bundle (the reference) and a plain
// fork+exec of the same binary on the host (the floor), interleaved in the same run. Both runtimes
// get the same config.json: Docker's default spec from runtime/spec (new pid, ipc, uts, mount,
// cgroup and network namespaces with only lo, seccomp, capabilities) with a cgroup of its own per
// run. It writes the table to the "runtime" section of docs/performance.md. Run as root; it leaves
// no container, mount, cgroup or state behind.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ovnet/ov/internal/ovrt/cgroup"
	"github.com/ovnet/ov/internal/ovrt/spec"
	"github.com/ovnet/ov/internal/perfdoc"
	"github.com/ovnet/ov/internal/testutil"
)

func main() {
	out := flag.String("out", "docs/performance.md", "markdown file whose \"runtime\" section gets the table")
	runs := flag.Int("runs", 50, "measured runs per subject, interleaved (at least 20)")
	ovrt := flag.String("ovrt", "bin/ovrt", "ovrt binary (skipped with a note when missing)")
	runc := flag.String("runc", "/usr/sbin/runc", "runc binary, the reference (skipped with a note when missing)")
	flag.Parse()
	if err := run(*out, *runs, *ovrt, *runc); err != nil {
		fmt.Fprintln(os.Stderr, "ovbench-runtime:", err)
		os.Exit(1)
	}
}

// subject is one way of running /bin/true, measured runs times.
type subject struct {
	name    string
	version string
	cmd     func(i int) *exec.Cmd // the command of run i (state and cgroup unique to i)
	samples []time.Duration
	note    string // why it was not measured, if it was not
}

func run(out string, runs int, ovrtBin, runcBin string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (namespaces, cgroups, mounts): run it as root, e.g. sudo make bench")
	}
	if runs < 20 {
		return fmt.Errorf("--runs %d: at least 20 runs are needed for a median and p90", runs)
	}
	tmp, err := os.MkdirTemp("", "ovbench-runtime-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bundle := filepath.Join(tmp, "bundle")
	if err := testutil.MakeBusyboxRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		return err
	}
	cgParent := fmt.Sprintf("/ovbench-%d", os.Getpid())
	defer removeCgroups(cgParent)

	floor := &subject{name: "fork+exec of busybox true on the host (floor)", cmd: func(int) *exec.Cmd {
		return exec.Command(filepath.Join(bundle, "rootfs/bin/busybox"), "true")
	}}
	subjects := []*subject{
		runtimeSubject("ovrt (ov)", ovrtBin, tmp, bundle),
		runtimeSubject("runc (Debian)", runcBin, tmp, bundle),
		floor,
	}
	// Warm up (page cache, first cgroup creation), and find out which subjects work at all.
	for _, s := range subjects {
		if s.note != "" {
			continue
		}
		for w := 0; w < 3; w++ {
			if _, err := measure(s, bundle, cgParent, -1-w); err != nil {
				s.note = "failed: " + err.Error()
				fmt.Fprintf(os.Stderr, "ovbench-runtime: %s: %v\n", s.name, err)
				break
			}
		}
	}
	// Interleave: each round runs every subject once, in an order that rotates each round.
	for i := 0; i < runs; i++ {
		for k := range subjects {
			s := subjects[(i+k)%len(subjects)]
			if s.note != "" {
				continue
			}
			d, err := measure(s, bundle, cgParent, i)
			if err != nil {
				s.note = fmt.Sprintf("failed at run %d: %v", i, err)
				continue
			}
			s.samples = append(s.samples, d)
		}
	}
	body := table(subjects, runs)
	fmt.Print(body)
	if err := perfdoc.WriteSection(out, "runtime", body); err != nil {
		return err
	}
	for _, s := range subjects[:2] {
		if s.note != "" {
			return fmt.Errorf("%s: %s (the table says so)", s.name, s.note)
		}
	}
	return nil
}

func runtimeSubject(name, bin, tmp, bundle string) *subject {
	s := &subject{name: name}
	if _, err := os.Stat(bin); err != nil {
		s.note = fmt.Sprintf("not measured: %s is not built or installed", bin)
		return s
	}
	if v, err := exec.Command(bin, "--version").Output(); err == nil {
		s.version = strings.SplitN(strings.TrimSpace(string(v)), "\n", 2)[0]
	}
	state := filepath.Join(tmp, "state-"+filepath.Base(bin))
	s.cmd = func(i int) *exec.Cmd {
		return exec.Command(bin, "--root", state, "run", "--bundle", bundle, fmt.Sprintf("ovbench-%d", i+10))
	}
	return s
}

// measure writes the bundle's config.json with a cgroup unique to run i (untimed), then times the
// command from fork to exit, and checks that nothing of the container is left.
func measure(s *subject, bundle, cgParent string, i int) (time.Duration, error) {
	cgPath := fmt.Sprintf("%s/%s-%d", cgParent, strings.Fields(s.name)[0], i+10)
	if err := writeConfig(bundle, cgPath); err != nil {
		return 0, err
	}
	cmd := s.cmd(i)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(output.String()))
	}
	if _, err := cgroup.Load(cgPath); err == nil {
		return 0, fmt.Errorf("%s left its cgroup %s behind", cmd.Args[0], cgPath)
	}
	return d, nil
}

func writeConfig(bundle, cgPath string) error {
	s, err := spec.Default(spec.Options{ID: "ovbench", Args: []string{"/bin/true"}, CgroupsPath: cgPath})
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
}

// removeCgroups removes the benchmark's parent cgroup from every hierarchy (the runtimes remove
// their own cgroups; measure checks it).
func removeCgroups(parent string) {
	if c, err := cgroup.Load(parent); err == nil {
		if err := c.Delete(); err != nil {
			fmt.Fprintln(os.Stderr, "ovbench-runtime: cleanup:", err)
		}
	}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func table(subjects []*subject, runs int) string {
	var b strings.Builder
	b.WriteString("## Container start-to-exit latency\n\n")
	b.WriteString("`ovrt run` and `runc run` of `/bin/true` on the same busybox bundle, timed from fork of the runtime's\n")
	b.WriteString("command line to its exit (create, start, wait, delete). The spec is Docker's default from\n")
	b.WriteString("`runtime/spec`: new pid, ipc, uts, mount, cgroup and network namespaces (only `lo`, as\n")
	b.WriteString("`--network none`), Docker's seccomp profile and 14 capabilities, a fresh cgroup per run.\n")
	fmt.Fprintf(&b, "%d runs each, interleaved round by round after 3 warm-up runs.\n\n", runs)
	b.WriteString("| what | runs | median | p90 | min |\n|---|---|---|---|---|\n")
	for _, s := range subjects {
		name := s.name
		if s.version != "" {
			name += " — " + s.version
		}
		if len(s.samples) == 0 {
			fmt.Fprintf(&b, "| %s | 0 | %s | | |\n", name, s.note)
			continue
		}
		sorted := slices.Clone(s.samples)
		slices.Sort(sorted)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s |\n", name, len(sorted), ms(quantile(sorted, 0.5)), ms(quantile(sorted, 0.9)), ms(sorted[0]))
	}
	if a, r := subjects[0], subjects[1]; len(a.samples) > 0 && len(r.samples) > 0 {
		sa, sr := slices.Sorted(slices.Values(a.samples)), slices.Sorted(slices.Values(r.samples))
		fmt.Fprintf(&b, "\nMedian ovrt / runc: %.2f.\n", float64(quantile(sa, 0.5))/float64(quantile(sr, 0.5)))
	}
	fmt.Fprintf(&b, "\nMachine: %s, cgroups %s, load average %s at the end of the run (the machine is shared:\n", perfdoc.Machine(), cgroup.Detect(), loadavg())
	b.WriteString("compare the rows with each other, which were measured side by side, rather than across runs).\n")
	return b.String()
}

// loadavg returns the 1-minute load average, or "unknown".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}
