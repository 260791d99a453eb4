package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLogFileRotation: the log never holds more than maxSize x maxFile bytes (each file at most
// maxSize, as every entry here is smaller than that), ReadLog returns what is retained oldest first
// across the files with nothing missing between the oldest kept line and the newest, tail works
// across files, and reopening with a smaller max-file removes the files beyond it.
func TestLogFileRotation(t *testing.T) {
	for _, c := range []struct {
		name    string
		maxSize int64
		maxFile int
	}{
		{"three files", 1000, 3},
		{"two files", 4096, 2},
		{"one file truncates", 500, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "c-json.log")
			lf, err := openLogFile(path, c.maxSize, c.maxFile)
			if err != nil {
				t.Fatal(err)
			}
			const n = 2000
			for i := 1; i <= n; i++ {
				// Lines arrive split across writes, and two streams interleave.
				stream := "stdout"
				if i%7 == 0 {
					stream = "stderr"
				}
				line := fmt.Sprintf("line %d\n", i)
				if err := lf.write(stream, []byte(line[:3])); err != nil {
					t.Fatal(err)
				}
				if err := lf.write(stream, []byte(line[3:])); err != nil {
					t.Fatal(err)
				}
			}
			if err := lf.close(); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(dir)
			var total int64
			var names []string
			for _, e := range entries {
				fi, _ := e.Info()
				names = append(names, e.Name())
				total += fi.Size()
				if fi.Size() > c.maxSize {
					t.Errorf("%s: %d bytes, over max-size %d", e.Name(), fi.Size(), c.maxSize)
				}
			}
			if len(entries) != c.maxFile || total > c.maxSize*int64(c.maxFile) {
				t.Errorf("files %v (%d bytes), want %d files and at most %d bytes", names, total, c.maxFile, c.maxSize*int64(c.maxFile))
			}
			var got []string
			if _, err := ReadLog(path, -1, func(e LogEntry) error { got = append(got, e.Log); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				t.Fatal("nothing retained")
			}
			first := n - len(got) + 1
			for i, l := range got {
				if want := fmt.Sprintf("line %d\n", first+i); l != want {
					t.Fatalf("entry %d is %q, want %q: the retained log is not the newest lines in order", i, l, want)
				}
			}
			if c.maxFile > 1 && len(got)*len("{\"log\":\"line 1000\\n\",\"stream\":\"stdout\",\"time\":\"2026-12-02T17:00:00.000000000Z\"}\n") < int(c.maxSize) {
				t.Errorf("only %d entries retained: the rotated files are not read", len(got))
			}
			var tail []string
			if _, err := ReadLog(path, 3, func(e LogEntry) error { tail = append(tail, strings.TrimSpace(e.Log)); return nil }); err != nil {
				t.Fatal(err)
			}
			want := []string{"line 1998", "line 1999", "line 2000"}
			if len(got) < 3 { // max-file 1 has just been emptied
				want = want[3-len(got):]
			}
			if diff := cmp.Diff(want, tail); diff != "" {
				t.Errorf("tail 3 (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("smaller max-file on reopen", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "c-json.log")
		for _, name := range []string{"c-json.log", "c-json.log.1", "c-json.log.2", "c-json.log.3"} {
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		lf, err := openLogFile(path, 100, 2)
		if err != nil {
			t.Fatal(err)
		}
		lf.close()
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if diff := cmp.Diff([]string{"c-json.log", "c-json.log.1"}, names); diff != "" {
			t.Errorf("files (-want +got):\n%s", diff)
		}
	})

	t.Run("an entry larger than max-size", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "c-json.log")
		lf, err := openLogFile(path, 100, 2)
		if err != nil {
			t.Fatal(err)
		}
		big := strings.Repeat("x", 300) + "\n"
		for range 3 {
			if err := lf.write("stdout", []byte(big)); err != nil {
				t.Fatal(err)
			}
		}
		lf.close()
		var got int
		ReadLog(path, -1, func(e LogEntry) error {
			if e.Log != big {
				t.Errorf("entry cut: %d bytes", len(e.Log))
			}
			got++
			return nil
		})
		if got != 2 {
			t.Errorf("%d entries retained, want 2 (one whole entry a file)", got)
		}
	})
}
