package testutil

import "testing"

func TestParseMetrics(t *testing.T) {
	text := `# HELP a_total A counter.
# TYPE a_total counter
a_total{route="GET /v1/networks/{name}",code="401"} 3
a_total{route="with \"quotes\", commas",code="200"} 2
plain 1.5e+00
h_bucket{le="+Inf"} 7
`
	s, err := ParseMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
		found  bool
	}{
		{"a_total", nil, 5, true},
		{"a_total", map[string]string{"code": "401"}, 3, true},
		{"a_total", map[string]string{"route": `with "quotes", commas`}, 2, true},
		{"a_total", map[string]string{"code": "500"}, 0, false},
		{"plain", nil, 1.5, true},
		{"h_bucket", map[string]string{"le": "+Inf"}, 7, true},
		{"missing", nil, 0, false},
	} {
		if v, ok := MetricValue(s, c.name, c.labels); v != c.want || ok != c.found {
			t.Errorf("%s%v = %v, %v; want %v, %v", c.name, c.labels, v, ok, c.want, c.found)
		}
	}
	if _, err := ParseMetrics("broken{le=\"1\" 3\n"); err == nil {
		t.Error("a line with an unterminated label set parsed")
	}
}
