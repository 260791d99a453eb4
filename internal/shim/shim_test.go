package shim

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLogFileLinesAndTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	lf, err := openLogFile(path, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	writes := []struct{ stream, data string }{
		{"stdout", "one\ntw"}, {"stderr", "err\n"}, {"stdout", "o\nthree"},
	}
	for _, w := range writes {
		if err := lf.write(w.stream, []byte(w.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := lf.close(); err != nil {
		t.Fatal(err)
	}
	read := func(tail int) []string {
		var out []string
		if _, err := ReadLog(path, tail, func(e LogEntry) error { out = append(out, e.Stream+":"+e.Log); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := []string{"stdout:one\n", "stderr:err\n", "stdout:two\n", "stdout:three"}
	if diff := cmp.Diff(want, read(-1)); diff != "" {
		t.Errorf("all entries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[2:], read(2)); diff != "" {
		t.Errorf("tail 2 (-want +got):\n%s", diff)
	}
	if got := read(0); len(got) != 0 {
		t.Errorf("tail 0: %q", got)
	}
	if _, err := ReadLog(filepath.Join(t.TempDir(), "missing"), -1, func(LogEntry) error { return nil }); err != nil {
		t.Errorf("a missing log is not empty: %v", err)
	}
}

func TestStartErrorCode(t *testing.T) {
	cases := []struct {
		msg  string
		want int
	}{
		{`exec: "nosuch": executable file not found in $PATH`, 127},
		{`exec /bin/x: no such file or directory`, 127},
		{`exec: "/etc/passwd": permission denied`, 126},
		{`cgroup: device or resource busy`, 125},
	}
	for _, tc := range cases {
		if got := StartErrorCode(tc.msg); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.msg, got, tc.want)
		}
	}
}

func TestRuntimeLogError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rt.log")
	os.WriteFile(p, []byte(`{"level":"info","msg":"starting"}
{"level":"error","msg":"first"}
{"level":"ERROR","msg":"container init failed"}
`), 0o600)
	if got := runtimeLogError(p); got != "container init failed" {
		t.Errorf("got %q", got)
	}
}
