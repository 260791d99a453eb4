package agent

import (
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/image"
)

func TestCommand(t *testing.T) {
	img := image.RunConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}}
	cases := []struct {
		name string
		req  api.ContainerCreate
		want []string
	}{
		{"image's entrypoint and cmd", api.ContainerCreate{}, []string{"/entry", "default"}},
		{"args replace cmd", api.ContainerCreate{Cmd: []string{"a", "b"}}, []string{"/entry", "a", "b"}},
		{"--entrypoint drops the image's cmd", api.ContainerCreate{Entrypoint: []string{"sh"}}, []string{"sh"}},
		{"--entrypoint with args", api.ContainerCreate{Entrypoint: []string{"sh"}, Cmd: []string{"-c", "x"}}, []string{"sh", "-c", "x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, command(tc.req, img)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "A=1"}, []string{"A=2", "B=3"})
	if diff := cmp.Diff([]string{"PATH=/bin", "A=2", "B=3"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseSignal(t *testing.T) {
	cases := map[string]syscall.Signal{"": syscall.SIGKILL, "TERM": syscall.SIGTERM, "SIGHUP": syscall.SIGHUP, "kill": syscall.SIGKILL, "10": syscall.SIGUSR1}
	for in, want := range cases {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	if _, err := ParseSignal("NOPE"); err == nil {
		t.Errorf("an unknown signal was accepted")
	}
}
