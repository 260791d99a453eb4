package perfdoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteSectionReplacesOnlyItsOwn(t *testing.T) {
	p := filepath.Join(t.TempDir(), "performance.md")
	steps := []struct{ name, body string }{
		{"runtime", "| a | 1 |"},
		{"ipam", "| b | 2 |"},
		{"runtime", "| a | 3 |"},
	}
	for _, s := range steps {
		if err := WriteSection(p, s.name, s.body); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	got := string(b)
	for _, want := range []string{"| a | 3 |", "| b | 2 |"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "| a | 1 |") || strings.Count(got, "BEGIN runtime") != 1 {
		t.Errorf("old runtime section not replaced:\n%s", got)
	}
	if strings.Index(got, "BEGIN runtime") > strings.Index(got, "BEGIN ipam") {
		t.Errorf("section order changed:\n%s", got)
	}
}
