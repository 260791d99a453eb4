package main

import "testing"

func TestLoopback(t *testing.T) {
	tests := []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:7480", true},
		{"127.0.0.5:7480", true},
		{"[::1]:7480", true},
		{"localhost:7480", true},
		{"0.0.0.0:7480", false},
		{":7480", false},
		{"10.0.0.1:7480", false},
		{"[::]:7480", false},
		{"garbage", false},
	}
	for _, tc := range tests {
		t.Run(tc.listen, func(t *testing.T) {
			if got := loopback(tc.listen); got != tc.want {
				t.Fatalf("loopback(%q) = %v, want %v", tc.listen, got, tc.want)
			}
		})
	}
}
