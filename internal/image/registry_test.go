package image

import "testing"

func TestRegistryInsecure(t *testing.T) {
	c := RegistryConfig{Insecure: []string{"reg.example:5000", "plain.example", "10.1.0.0/16"}}
	for reg, want := range map[string]bool{
		"reg.example:5000":  true,
		"reg.example:5001":  false,
		"plain.example":     true,
		"plain.example:443": true,
		"10.1.2.3:5000":     true,
		"10.2.0.1:5000":     false,
		"example.com":       false,
	} {
		if got := c.insecure(reg); got != want {
			t.Errorf("insecure(%q) = %v, want %v", reg, got, want)
		}
	}
}
