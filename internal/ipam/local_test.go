package ipam

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ovnet/ov/internal/errdefs"
)

func TestLocal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.json")
	l, err := NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	r := mustRange(t, "172.30.0.0/29", "", "") // .2-.6 usable

	steps := []struct {
		name, op, owner, want string
		wantIP, wantErr       string
		class                 error
	}{
		{name: "first address", op: "alloc", owner: "c1", wantIP: "172.30.0.2"},
		{name: "same owner same address", op: "alloc", owner: "c1", wantIP: "172.30.0.2"},
		{name: "next", op: "alloc", owner: "c2", wantIP: "172.30.0.3"},
		{name: "requested", op: "alloc", owner: "c3", want: "172.30.0.6", wantIP: "172.30.0.6"},
		{name: "requested taken names holder", op: "alloc", owner: "c4", want: "172.30.0.3", wantErr: "172.30.0.3 is already used by c2", class: errdefs.ErrConflict},
		{name: "requested gateway", op: "alloc", owner: "c4", want: "172.30.0.1", wantErr: "gateway", class: errdefs.ErrInvalidArgument},
		{name: "requested outside", op: "alloc", owner: "c4", want: "10.0.0.1", wantErr: "outside subnet", class: errdefs.ErrInvalidArgument},
		{name: "release c1", op: "release", owner: "c1"},
		{name: "released address not reused at once", op: "alloc", owner: "c5", wantIP: "172.30.0.4"},
		{name: "then the rest", op: "alloc", owner: "c6", wantIP: "172.30.0.5"},
		{name: "then wraps to the released one", op: "alloc", owner: "c7", wantIP: "172.30.0.2"},
		{name: "exhausted", op: "alloc", owner: "c8", wantErr: "in use", class: errdefs.ErrExhausted},
		{name: "release unknown is fine", op: "release", owner: "nobody"},
	}
	for _, s := range steps {
		switch s.op {
		case "alloc":
			var want netip.Addr
			if s.want != "" {
				want = a(s.want)
			}
			got, err := l.Allocate("n1", r, s.owner, want)
			if s.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), s.wantErr) || !errors.Is(err, s.class) {
					t.Fatalf("%s: err = %v, want %v containing %q", s.name, err, s.class, s.wantErr)
				}
				continue
			}
			if err != nil || got != a(s.wantIP) {
				t.Fatalf("%s: got %v, %v; want %s", s.name, got, err, s.wantIP)
			}
		case "release":
			if err := l.Release("n1", s.owner); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
	}

	// The state survives a restart, cursor included.
	l2, err := NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(l2.Owners("n1")), 5; got != want {
		t.Fatalf("after reopen: %d owners, want %d: %v", got, want, l2.Owners("n1"))
	}
	if err := l2.Release("n1", "c5"); err != nil {
		t.Fatal(err)
	}
	if got, err := l2.Allocate("n1", r, "c9", netip.Addr{}); err != nil || got != a("172.30.0.4") {
		t.Fatalf("after reopen: got %v, %v; want 172.30.0.4", got, err)
	}
	if err := l2.DropNetwork("n1"); err != nil {
		t.Fatal(err)
	}
	if len(l2.Owners("n1")) != 0 || len(l2.Networks()) != 0 {
		t.Fatal("DropNetwork left state behind")
	}
	l3, err := NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(l3.Networks()) != 0 {
		t.Fatalf("dropped network came back after reopen: %v", l3.Networks())
	}
}

func TestLocalConcurrentUnique(t *testing.T) {
	l, err := NewLocal(filepath.Join(t.TempDir(), "ipam.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := mustRange(t, "172.30.0.0/24", "", "")
	var wg sync.WaitGroup
	got := make([]netip.Addr, 100)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x, err := l.Allocate("n", r, "c"+string(rune('A'+i%26))+string(rune('a'+i/26)), netip.Addr{})
			if err != nil {
				t.Error(err)
			}
			got[i] = x
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for _, x := range got {
		if seen[x] {
			t.Fatalf("%s handed out twice", x)
		}
		seen[x] = true
	}
}

func TestNewLocalCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.json")
	if err := writeFile(path, "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLocal(path); err == nil || !strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("err = %v, want a message telling what to do", err)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
