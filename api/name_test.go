package api

import (
	"regexp"
	"strings"
	"testing"
)

// TestValidNameMatchesTheRegexp: the loop in ValidName accepts exactly what the documented pattern
// ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$ does.
func TestValidNameMatchesTheRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	cases := []string{"", "a", "A9", "web-1", "my_net.2", "_x", ".x", "-x", "x_", "x.", "x-", "a b", "a/b", "é",
		"x\x00", strings.Repeat("a", 63), strings.Repeat("a", 64), "a" + strings.Repeat("-", 62)}
	for c := 0; c < 256; c++ {
		cases = append(cases, string(rune(c)), "a"+string(byte(c)))
	}
	for _, s := range cases {
		if got, want := ValidName(s), re.MatchString(s); got != want {
			t.Errorf("ValidName(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}
