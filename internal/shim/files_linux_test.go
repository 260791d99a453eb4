package shim

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestKeepAndTakeFiles: files given to the shim are the same open files when taken back (a byte
// written into the taken pipe comes out of the original), the shim still keeps them after a take,
// and keeping none drops them.
func TestKeepAndTakeFiles(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "shim.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &Shim{log: slog.New(slog.DiscardHandler)}
	srv := &http.Server{Handler: s.routes()}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	defer s.kept.replace(nil)
	c := NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := c.KeepFiles(ctx, []*os.File{w}); err != nil {
		t.Fatal(err)
	}
	w.Close() // the shim's copy keeps the pipe open
	for round := range 2 {
		taken, err := c.TakeFiles(ctx)
		if err != nil || len(taken) != 1 {
			t.Fatalf("take %d: %v %v, want one file", round, taken, err)
		}
		if _, err := taken[0].Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		taken[0].Close()
		b := make([]byte, 1)
		if _, err := io.ReadFull(r, b); err != nil || b[0] != 'x' {
			t.Fatalf("take %d: the original pipe read %q %v, want x", round, b, err)
		}
	}
	if err := c.KeepFiles(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if taken, err := c.TakeFiles(ctx); err != nil || len(taken) != 0 {
		t.Fatalf("take after dropping: %v %v, want none", taken, err)
	}
	if _, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the pipe after the shim dropped its copy: %v, want EOF", err)
	}
}
