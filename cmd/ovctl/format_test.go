package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/api"
)

func TestFormat(t *testing.T) {
	created := time.Now().Add(-3 * time.Hour)
	c := api.Container{
		ID: strings.Repeat("ab", 32), Name: "web", Image: "busybox", Command: []string{"httpd", "-f"},
		Created: created, State: api.ContainerState{Status: api.StateRunning, StartedAt: created},
		Config:   api.ContainerCreate{Labels: map[string]string{"tier": "web", "a": "1"}, Ports: []api.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}, Mounts: []api.Mount{{Type: api.MountVolume, Source: "data", Destination: "/d"}}},
		Networks: []api.ContainerEndpoint{{Network: "front", IP: "10.0.0.2"}, {Network: "back"}},
	}
	img := api.Image{ID: "sha256:" + strings.Repeat("cd", 32), Refs: []string{"busybox:latest", "localhost:5000/bb:1"}, Size: 4_860_000, Created: created}
	cases := []struct {
		name, format string
		rows         []any
		def          string
		headers      map[string]string
		want         string
	}{
		{"ps table", `table {{.ID}}\t{{.Names}}`, psRows([]api.Container{c}), psTable, psHeaders,
			"CONTAINER ID   NAMES\nabababababab   web\n"},
		{"ps fields", "{{.Image}} {{.Command}} {{.State}} {{.Ports}} {{.Networks}} {{.Mounts}} {{.RunningFor}}", psRows([]api.Container{c}), psTable, psHeaders,
			`busybox "httpd -f" running 0.0.0.0:8080->80/tcp front,back data 3 hours ago` + "\n"},
		{"ps labels", `{{.Labels}} {{.Label "tier"}}`, psRows([]api.Container{c}), psTable, psHeaders, "a=1,tier=web web\n"},
		{"ps status", "{{.Status}}", psRows([]api.Container{c}), psTable, psHeaders, "Up 3 hours\n"},
		{"upper lower join split", `{{upper .Names}} {{lower "AB"}} {{join (split .Networks ",") "+"}}`, psRows([]api.Container{c}), psTable, psHeaders,
			"WEB ab front+back\n"},
		{"json function", "{{json .Names}}", psRows([]api.Container{c}), psTable, psHeaders, "\"web\"\n"},
		{"json format", "json", []any{map[string]int{"a": 1}}, "", nil, "{\"a\":1}\n"},
		{"ps table default", "table", psRows([]api.Container{c}), psTable, psHeaders,
			"CONTAINER ID   IMAGE     COMMAND      CREATED       STATUS       PORTS                  NAMES\nabababababab   busybox   \"httpd -f\"   3 hours ago   Up 3 hours   0.0.0.0:8080->80/tcp   web\n"},
		{"image ls", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}\t{{.CreatedSince}}", imageLsRows([]api.Image{img}), imageTable, imageHeaders,
			"REPOSITORY          TAG      IMAGE ID       SIZE     CREATED\nbusybox             latest   cdcdcdcdcdcd   4.86MB   3 hours ago\nlocalhost:5000/bb   1        cdcdcdcdcdcd   4.86MB   3 hours ago\n"},
		{"image without refs or time", "{{.Repository}}:{{.Tag}} {{.CreatedSince}}", imageLsRows([]api.Image{{ID: "sha256:00"}}), imageTable, imageHeaders, "<none>:<none> N/A\n"},
		{"network ls", "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
			networkRows([]api.Network{{ID: strings.Repeat("1", 64), Name: "front", Driver: "bridge"}, {ID: "2", Name: "ov", Driver: api.DriverOverlay}}), networkTable, networkHeaders,
			"NETWORK ID     NAME    DRIVER    SCOPE\n111111111111   front   bridge    local\n2              ov      overlay   global\n"},
		{"unknown header field", "table {{.Names}}\t{{.Bogus}}", []any{map[string]string{"Names": "x", "Bogus": "y"}}, "", psHeaders, "NAMES   \nx       y\n"},
		{"inspect", "{{.State.Status}} {{.Name}} {{(index .Config.Mounts 0).Source}}", []any{c}, "", nil, "running web data\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeFormatted(&b, tc.format, tc.def, tc.headers, tc.rows); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got\n%q\nwant\n%q", b.String(), tc.want)
			}
		})
	}
	for _, bad := range []string{"{{.ID", "{{nosuchfunc .ID}}"} {
		if err := writeFormatted(&bytes.Buffer{}, bad, "", nil, nil); err == nil || !strings.Contains(err.Error(), "template parsing error") {
			t.Errorf("%q: %v, want a parsing error", bad, err)
		}
	}
	if err := writeFormatted(&bytes.Buffer{}, "{{.Nope}}", "", nil, psRows([]api.Container{c})); err == nil {
		t.Errorf("a field the row lacks: no error")
	}
	if err := writeInspect(&bytes.Buffer{}, "table {{.Name}}", []any{c}); err == nil {
		t.Errorf("inspect --format table: no error")
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "Less than a second", time.Second: "1 second", 45 * time.Second: "45 seconds", 61 * time.Second: "About a minute",
		10 * time.Minute: "10 minutes", 50 * time.Hour: "2 days", 20 * 24 * time.Hour: "2 weeks",
		90 * 24 * time.Hour: "3 months", 3 * 365 * 24 * time.Hour: "3 years",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
