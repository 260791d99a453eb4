package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovnet/ov/api"
)

// TestCredStore: login's file is docker's config.json format, 0600 in a 0700 directory, keeps keys it
// does not know, and logout removes only the registry named.
func TestCredStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cfg")
	t.Setenv("DOCKER_CONFIG", dir)
	cs, err := defaultCredStore()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cs.path, []byte(`{"psFormat":"table {{.ID}}","auths":{"other:5000":{"auth":"eDp5"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if a, err := cs.get("reg:5000"); err != nil || a != nil {
		t.Fatalf("get before login: %v %v", a, err)
	}
	if err := cs.set(api.RegistryAuth{Username: "alice", Password: "pa:ss", ServerAddress: "reg:5000"}); err != nil {
		t.Fatal(err)
	}
	if err := cs.set(api.RegistryAuth{Username: "bob", Password: "pw", ServerAddress: "docker.io"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(cs.path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %v (%v), want 0600", fi.Mode(), err)
	}
	a, err := cs.get("reg:5000")
	if err != nil || a == nil || a.Username != "alice" || a.Password != "pa:ss" {
		t.Fatalf("get: %+v %v", a, err)
	}
	if a, _ := cs.get("index.docker.io"); a == nil || a.Username != "bob" {
		t.Errorf("Docker Hub's entry under docker's key: %+v", a)
	}
	var raw map[string]json.RawMessage
	b, _ := os.ReadFile(cs.path)
	if err := json.Unmarshal(b, &raw); err != nil || string(raw["psFormat"]) != `"table {{.ID}}"` {
		t.Errorf("an unknown key was lost: %s", b)
	}
	if !strings.Contains(string(b), `"https://index.docker.io/v1/"`) || !strings.Contains(string(b), `"other:5000"`) {
		t.Errorf("config.json %s lacks docker's Hub key or the other registry", b)
	}
	if had, err := cs.remove("reg:5000"); err != nil || !had {
		t.Fatalf("logout: %v %v", had, err)
	}
	if had, _ := cs.remove("reg:5000"); had {
		t.Error("a second logout found credentials")
	}
	if a, _ := cs.get("other:5000"); a == nil {
		t.Error("logout of one registry removed another's credentials")
	}
}

// TestPullDisplayPlain: without a terminal, one line per change of a layer's status, no byte counts.
func TestPullDisplayPlain(t *testing.T) {
	var b strings.Builder
	p := newPullDisplay(&b, false)
	for _, ev := range []api.ImagePullEvent{
		{Status: "v1: Pulling from app"},
		{Layer: "aaa", Status: "Pulling fs layer"},
		{Layer: "bbb", Status: "Already exists"},
		{Layer: "aaa", Status: "Downloading", Current: 10, Total: 100},
		{Layer: "aaa", Status: "Downloading", Current: 50, Total: 100},
		{Layer: "aaa", Status: "Download complete"},
		{Layer: "aaa", Status: "Pull complete"},
		{Status: "Digest: sha256:x"},
	} {
		p.event(ev)
	}
	want := "v1: Pulling from app\naaa: Pulling fs layer\nbbb: Already exists\naaa: Download complete\naaa: Pull complete\nDigest: sha256:x\n"
	if b.String() != want {
		t.Errorf("plain display:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestPullDisplayTerminal: on a terminal each layer keeps its line, redrawn in place with a bar.
func TestPullDisplayTerminal(t *testing.T) {
	var b strings.Builder
	p := newPullDisplay(&b, true)
	p.event(api.ImagePullEvent{Layer: "aaa", Status: "Pulling fs layer"})
	p.event(api.ImagePullEvent{Layer: "bbb", Status: "Pulling fs layer"})
	p.event(api.ImagePullEvent{Layer: "aaa", Status: "Downloading", Current: 500_000, Total: 1_000_000})
	out := b.String()
	if !strings.Contains(out, "\x1b[2A") {
		t.Errorf("no cursor-up over the two layer lines: %q", out)
	}
	if !strings.Contains(out, "aaa: Downloading [====================>                   ] 500kB/1MB") {
		t.Errorf("no progress bar: %q", out)
	}
}
