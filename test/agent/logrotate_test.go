package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/internal/testutil"
)

// logBytes is the size on disk of a container's log files (the current one and the rotated ones).
func (l *lab) logBytes(id string) (int64, []string) {
	files, _ := filepath.Glob(filepath.Join(l.dir, "lib", "containers", id, id+"-json.log*"))
	var total int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	return total, files
}

// TestLogFlood: a container writing 1 GiB to stdout leaves at most its configured log size on disk
// (max-size x max-file plus one line), and the agent keeps answering while it writes.
func TestLogFlood(t *testing.T) {
	l := newLab(t)
	const maxSize, maxFile = 256 << 10, 2
	// 1 GiB in lines of 1000 characters; the shim turns each into a json-file entry.
	id := l.runD("--log-opt", fmt.Sprintf("max-size=%d", maxSize), "--log-opt", fmt.Sprintf("max-file=%d", maxFile),
		"busybox", "sh", "-c", `yes "$(head -c 999 /dev/zero | tr '\0' a)" | head -c 1073741824`)
	entry := int64(len(`{"log":"","stream":"stdout","time":"2026-12-02T17:49:39.437000000Z"}`) + 1000 + 1)
	limit := int64(maxSize*maxFile) + entry
	var peak int64
	var slowest time.Duration
	deadline := time.Now().Add(90 * time.Second)
	for {
		if n, files := l.logBytes(id); n > peak {
			peak = n
			if n > limit {
				t.Fatalf("the log takes %d bytes on disk (%v), over max-size x max-file + one line = %d", n, files, limit)
			}
		}
		t0 := time.Now()
		l.must("ps")
		if d := time.Since(t0); d > slowest {
			slowest = d
		}
		if l.inspect(id).State.Status == "exited" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not finish writing 1 GiB within 90s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if slowest > 2*time.Second {
		t.Errorf("ovctl ps took %v during the flood, want under 2s", slowest)
	}
	n, files := l.logBytes(id)
	if n > limit || len(files) != maxFile {
		t.Errorf("after 1 GiB: %d bytes in %v, want at most %d bytes in %d files", n, files, limit, maxFile)
	}
	out := l.must("logs", id)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if int64(len(lines)) < maxSize/entry || int64(len(out)) > int64(maxSize*maxFile) {
		t.Errorf("ovctl logs returned %d lines (%d bytes); want the retained history of both files (over %d lines)", len(lines), len(out), maxSize/entry)
	}
	t.Logf("1 GiB written: peak %d bytes on disk (limit %d), ovctl ps at worst %v, %d lines retained", peak, limit, slowest, len(lines))
}

// TestLogRotationReadsInOrder: ovctl logs returns the whole retained history across rotated files,
// oldest first with nothing missing, through the shim while the container runs and from the files
// once it stopped; --tail and --follow work across rotations; defaults are recorded; bad options are
// refused before anything is made.
func TestLogRotationReadsInOrder(t *testing.T) {
	l := newLab(t)
	const n = 3000
	checkSuffix := func(what, out string, minLines int) {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) < minLines {
			t.Fatalf("%s: %d lines, want at least %d (the rotated files too)", what, len(lines), minLines)
		}
		first, err := strconv.Atoi(lines[0])
		if err != nil {
			t.Fatalf("%s: first line %q", what, lines[0])
		}
		for i, line := range lines {
			if line != strconv.Itoa(first+i) {
				t.Fatalf("%s: line %d is %q, want %d: not the retained lines in order", what, i, line, first+i)
			}
		}
		if lines[len(lines)-1] != strconv.Itoa(n) {
			t.Fatalf("%s: ends with %q, want %d", what, lines[len(lines)-1], n)
		}
	}
	// About 80 bytes an entry: an 8 KiB file holds ~100 lines; three files ~300.
	opts := []string{"--log-opt", "max-size=8k", "--log-opt", "max-file=3"}
	id := l.runD(append(opts, "busybox", "sh", "-c", fmt.Sprintf("seq 1 %d; sleep 1000", n))...)
	testutil.Eventually(t, 20*time.Second, func() error {
		if out := l.must("logs", "--tail", "1", id); out != strconv.Itoa(n)+"\n" {
			return fmt.Errorf("last line %q", out)
		}
		return nil
	})
	if _, files := l.logBytes(id); len(files) != 3 {
		t.Errorf("log files %v, want 3", files)
	}
	checkSuffix("logs (running)", l.must("logs", id), 200)
	if diff := cmp.Diff("2996\n2997\n2998\n2999\n3000\n", l.must("logs", "--tail", "5", id)); diff != "" {
		t.Errorf("logs --tail 5 (-want +got):\n%s", diff)
	}
	l.must("stop", "-t", "1", id)
	checkSuffix("logs (stopped)", l.must("logs", id), 200)
	if diff := cmp.Diff("2999\n3000\n", l.must("logs", "--tail", "2", id)); diff != "" {
		t.Errorf("logs --tail 2 of a stopped container (-want +got):\n%s", diff)
	}

	// Follow sees every line live, whatever the rotations.
	fid := l.runD(append(opts, "busybox", "sh", "-c", fmt.Sprintf("sleep 1; seq 1 %d", n))...)
	out := l.must("logs", "-f", fid)
	checkSuffix("logs -f", out, n)

	// Defaults are recorded.
	did := l.runD("busybox", "true")
	if diff := cmp.Diff(map[string]string{"max-size": "10m", "max-file": "3"}, l.inspect(did).Config.LogOpts); diff != "" {
		t.Errorf("default log options (-want +got):\n%s", diff)
	}

	// Bad options: a clear error, exit 125, no container.
	before := len(l.ps(true))
	for _, c := range []struct{ opt, want string }{
		{"max-size=lots", "--log-opt max-size=lots: want a size above 0 such as 512k, 10m or 1g"},
		{"max-file=0", "--log-opt max-file=0: want a number of files from 1 to 100"},
		{"compress=true", "--log-opt compress: unknown log option; use max-size=SIZE (e.g. 10m) or max-file=N"},
		{"max-size", `--log-opt "max-size": use KEY=VALUE`},
	} {
		_, errs, code := l.ctl("run", "-d", "--log-opt", c.opt, "busybox", "true")
		if code != 125 || !strings.Contains(errs, c.want) {
			t.Errorf("run --log-opt %s: exit %d %q, want 125 and %q", c.opt, code, errs, c.want)
		}
	}
	if after := len(l.ps(true)); after != before {
		t.Errorf("bad --log-opt runs left %d containers", after-before)
	}
}
