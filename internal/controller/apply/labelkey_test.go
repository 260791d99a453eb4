package apply

import (
	"regexp"
	"strings"
	"testing"
)

// TestValidLabelKeyMatchesTheRegexp: the loop accepts exactly what the documented pattern
// ^[a-zA-Z0-9]([a-zA-Z0-9._/-]{0,251}[a-zA-Z0-9])?$ does.
func TestValidLabelKeyMatchesTheRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._/-]{0,251}[a-zA-Z0-9])?$`)
	cases := []string{"", "a", "ab", "a-b", "a.b/c_d", "-a", "a-", "a/", "/a", "a b", "é", "a\x00b",
		strings.Repeat("a", 253), strings.Repeat("a", 254), "a" + strings.Repeat("/", 251) + "b", "a" + strings.Repeat("/", 252) + "b"}
	for c := 0; c < 256; c++ {
		cases = append(cases, string(byte(c)), "a"+string(byte(c)), "a"+string(byte(c))+"b")
	}
	for _, s := range cases {
		if got, want := validLabelKey(s), re.MatchString(s); got != want {
			t.Errorf("validLabelKey(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}
