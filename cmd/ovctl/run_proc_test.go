package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ovnet/ov/api"
)

// runRequest parses a run command line as `ovctl run` does.
func runRequest(t *testing.T, args ...string) (api.ContainerCreate, error) {
	t.Helper()
	var f runFlags
	cmd := &cobra.Command{Use: "run"}
	f.register(cmd, true)
	if err := cmd.ParseFlags(args); err != nil {
		return api.ContainerCreate{}, err
	}
	return f.request(cmd.Flags().Args())
}

func TestRunProcFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("OV_TEST_FROM_ENV", "yes")
	envFile := write("env", "# comment\nA=file\nB=file\nOV_TEST_FROM_ENV\nOV_TEST_UNSET_VAR\n")
	labelFile := write("labels", "tier=back\nflag\n")
	profile := write("profile.json", `{"defaultAction":"SCMP_ACT_ALLOW"}`)
	broken := write("broken.json", `{"defaultAction":`)

	req, err := runRequest(t, "--env-file", envFile, "-e", "B=flag", "--label-file", labelFile, "-l", "tier=front", "--label", "app=web",
		"--group-add", "audio", "--init", "--device", "/dev/fuse:rw", "--ulimit", "nofile=10:20", "--stop-signal", "SIGQUIT",
		"--stop-timeout", "3", "--security-opt", "no-new-privileges=false", "--security-opt", "seccomp="+profile,
		"--shm-size", "128m", "--add-host", "db:10.0.0.5", "busybox", "sh")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"A=file", "B=file", "OV_TEST_FROM_ENV=yes", "B=flag"}; !slices.Equal(req.Env, want) {
		t.Errorf("env %q, want %q (the env file first, -e last wins)", req.Env, want)
	}
	if req.Labels["tier"] != "front" || req.Labels["flag"] != "" || req.Labels["app"] != "web" || len(req.Labels) != 3 {
		t.Errorf("labels %v", req.Labels)
	}
	if req.StopTimeout == nil || *req.StopTimeout != 3 || req.StopSignal != "SIGQUIT" || !req.Init || req.ShmSize != 128<<20 {
		t.Errorf("stop %v/%s init %v shm %d", req.StopTimeout, req.StopSignal, req.Init, req.ShmSize)
	}
	if want := []string{"no-new-privileges=false", `seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`}; !slices.Equal(req.SecurityOpt, want) {
		t.Errorf("security opts %q, want the profile's content sent: %q", req.SecurityOpt, want)
	}
	if len(req.Devices) != 1 || req.Devices[0].CgroupPermissions != "rw" || req.Ulimits[0] != (api.Ulimit{Name: "nofile", Soft: 10, Hard: 20}) ||
		req.ExtraHosts[0] != "db:10.0.0.5" || req.GroupAdd[0] != "audio" {
		t.Errorf("request %+v", req)
	}

	plain, err := runRequest(t, "busybox")
	if err != nil || plain.StopTimeout != nil || plain.ShmSize != 0 || plain.Labels != nil {
		t.Errorf("defaults: %+v %v: want no stop timeout (the agent's default), no shm size, no labels", plain, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--security-opt", "seccomp=" + broken}, "broken.json: the file is not valid JSON"},
		{[]string{"--security-opt", "seccomp=/nonexistent.json"}, "seccomp=/nonexistent.json: open"},
		{[]string{"--security-opt", "apparmor=x"}, "not supported"},
		{[]string{"--env-file", "/nonexistent"}, "--env-file: open /nonexistent"},
		{[]string{"--env-file", write("bad", "A B=1\n")}, "line 1: variable \"A B\" contains white space"},
		{[]string{"--ulimit", "nofile=2:1"}, "soft limit exceeds"},
		{[]string{"--device", "dev"}, "--device \"dev\""},
		{[]string{"--shm-size", "0"}, "--shm-size \"0\""},
		{[]string{"--add-host", "nohost"}, "--add-host"},
		{[]string{"--stop-signal", "NOPE"}, "--stop-signal"},
		{[]string{"--label", "=x"}, "--label"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := runRequest(t, append(tc.args, "busybox")...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPsFilter(t *testing.T) {
	cs := []api.Container{
		{ID: "aaa111", Name: "web-1", State: api.ContainerState{Status: "running"}, Config: api.ContainerCreate{Labels: map[string]string{"app": "web", "tier": "front"}}},
		{ID: "bbb222", Name: "web-2", State: api.ContainerState{Status: "exited", ExitCode: 3}, Config: api.ContainerCreate{Labels: map[string]string{"app": "web"}}},
		{ID: "ccc333", Name: "db", State: api.ContainerState{Status: "created"}},
	}
	for _, tc := range []struct {
		filters []string
		want    string
		all     bool
	}{
		{nil, "web-1 web-2 db", false},
		{[]string{"label=app"}, "web-1 web-2", false},
		{[]string{"label=app=web", "label=tier=front"}, "web-1", false},
		{[]string{"label=app=db"}, "", false},
		{[]string{"name=^web"}, "web-1 web-2", false},
		{[]string{"name=db", "name=web-2"}, "web-2 db", false},
		{[]string{"id=bbb"}, "web-2", false},
		{[]string{"status=exited", "status=created"}, "web-2 db", true},
		{[]string{"exited=3"}, "web-2", true},
		{[]string{"status=running", "label=app"}, "web-1", true},
	} {
		t.Run(strings.Join(tc.filters, ","), func(t *testing.T) {
			f, err := parsePsFilter(tc.filters)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range f.apply(cs) {
				names = append(names, c.Name)
			}
			if got := strings.Join(names, " "); got != tc.want || f.needsAll() != tc.all {
				t.Errorf("got %q (all %v), want %q (all %v)", got, f.needsAll(), tc.want, tc.all)
			}
		})
	}
	for _, bad := range []string{"color=red", "label", "status=sleeping", "exited=x", "name=("} {
		if _, err := parsePsFilter([]string{bad}); err == nil {
			t.Errorf("--filter %s accepted", bad)
		}
	}
}
