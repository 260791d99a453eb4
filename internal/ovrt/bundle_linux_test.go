package ovrt

import (
	"regexp"
	"strings"
	"testing"
)

// validID is a loop for speed; it must accept exactly what the regexp it replaced accepts.
func TestValidIDMatchesTheRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)
	ids := []string{"", "a", "A", "0", "abc", "a_b.c+d-e", "_a", ".a", "+a", "-a", "a b", "a/b", "a\x00", "é",
		"a\n", strings.Repeat("a", 128), strings.Repeat("a", 129), "ab" + strings.Repeat("-", 126), "a" + strings.Repeat("-", 128)}
	for c := 0; c < 256; c++ {
		ids = append(ids, string([]byte{byte(c)}), "a"+string([]byte{byte(c)}))
	}
	for _, id := range ids {
		if got, want := validID(id), re.MatchString(id); got != want {
			t.Errorf("validID(%q) = %v, the regexp says %v", id, got, want)
		}
	}
}
