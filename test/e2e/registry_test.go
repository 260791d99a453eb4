package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovnet/ov/internal/lab"
	"github.com/ovnet/ov/internal/testutil"
)

// ctlEnv runs ovctl on a lab host with extra environment and standard input; it returns stdout and
// stderr.
func ctlEnv(l *lab.Lab, host string, env []string, stdin string, args ...string) (string, string, error) {
	c, err := l.Ctl(host, args...)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("ovctl %s on %s: %v: %s", strings.Join(args, " "), host, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), stderr.String(), err
}

// TestRegistryPushPull: Debian's docker-registry (htpasswd auth) runs in host3's namespace on the
// underlay; host1 logs in, pushes an image and removes it; host2, which never had the image (nor any
// of its layers), cannot pull it anonymously, logs in, and runs it: ovctl run pulls it first.
func TestRegistryPushPull(t *testing.T) {
	l := sharedLab(t)
	h3, err := l.Host("host3")
	if err != nil {
		t.Fatal(err)
	}
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{IP: h3.Addr, Port: 5000, User: "ci", Password: "pa55", Netns: "/run/netns/" + h3.Netns})
	env := []string{"DOCKER_CONFIG=" + t.TempDir()}
	ref := reg.Host + "/e2e/app:v1"

	// An image no host has: busybox plus a file with a token of this run.
	token := fmt.Sprintf("token-%d", time.Now().UnixNano())
	extra := t.TempDir()
	if err := os.WriteFile(filepath.Join(extra, "regtest-token"), []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(t.TempDir(), "app.tar")
	testutil.Run(t, "cp", image, tarball)
	testutil.Run(t, "tar", "-rf", tarball, "-C", extra, "./regtest-token")
	ctl(t, l, "host1", "image", "import", tarball, "app:v1")
	ctl(t, l, "host1", "image", "tag", "app:v1", ref)

	if _, _, err := ctlEnv(l, "host1", env, "", "push", ref); err == nil || !strings.Contains(err.Error(), "ovctl login "+reg.Host) {
		t.Fatalf("push before login: %v, want a refusal naming ovctl login", err)
	}
	if _, _, err := ctlEnv(l, "host1", env, "wrong\n", "login", "-u", "ci", "--password-stdin", reg.Host); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if out, _, err := ctlEnv(l, "host1", env, "pa55\n", "login", "-u", "ci", "--password-stdin", reg.Host); err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %v %s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimPrefix(env[0], "DOCKER_CONFIG="), "config.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v, want 0600", err, fi.Mode())
	}
	out, _, err := ctlEnv(l, "host1", env, "", "push", ref)
	if err != nil || !strings.Contains(out, "Pushed") {
		t.Fatalf("push: %v\n%s", err, out)
	}
	t.Logf("push:\n%s", out)
	ctl(t, l, "host1", "image", "rm", ref)
	ctl(t, l, "host1", "image", "rm", "app:v1")

	if _, _, err := ctlEnv(l, "host2", []string{"DOCKER_CONFIG=" + t.TempDir()}, "", "pull", ref); err == nil || !strings.Contains(err.Error(), "ovctl login") {
		t.Fatalf("anonymous pull: %v, want a refusal naming ovctl login", err)
	}
	out, stderr, err := ctlEnv(l, "host2", env, "", "run", "--rm", "--network", "none", ref, "cat", "/regtest-token")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "Unable to find image '"+ref+"' locally") || !strings.Contains(stderr, "Pull complete") {
		t.Errorf("run of a missing image: stderr %q, want docker's 'Unable to find image' and the pull's progress", stderr)
	}
	t.Logf("run:\n%s", stderr)
	if strings.TrimSpace(out) != token {
		t.Errorf("the pulled image printed %q, want %q", out, token)
	}
	out, _, err = ctlEnv(l, "host2", env, "", "pull", ref)
	if err != nil || !strings.Contains(out, "Image is up to date") || strings.Contains(out, "Pull complete") {
		t.Errorf("second pull: %v\n%s\nwant up to date, no layer fetched", err, out)
	}
	ctl(t, l, "host2", "image", "rm", ref)
	if out, _, err := ctlEnv(l, "host2", env, "", "logout", reg.Host); err != nil || !strings.Contains(out, "Removing login credentials") {
		t.Errorf("logout: %v %s", err, out)
	}
}
