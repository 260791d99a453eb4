package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovnet/ov/api"
)

// TestRecoverQuarantinesAndPrunes gives a fresh agent the state a crash can leave, one container per
// case, and checks what it makes of each: a readable record is loaded, an unreadable or missing one
// is quarantined (the file set aside, never deleted, nothing of the container removed), and only
// what a create or remove marked is removed. No shim answers here, so quarantined containers are
// "unknown".
func TestRecoverQuarantinesAndPrunes(t *testing.T) {
	type files map[string]string // path under the container's directory -> content
	for _, tc := range []struct {
		name       string
		files      files // nil: no directory under root
		bundle     bool  // a bundle under the run directory
		wantLoaded bool
		wantReason string // "" = not quarantined
		wantGone   bool   // the directories were removed
		wantAside  bool   // a container.json.corrupt-* holds the old record
	}{
		{name: "readable", files: files{recordFile: "RECORD"}, wantLoaded: true},
		{name: "truncated", files: files{recordFile: "TRUNCATED"}, bundle: true, wantLoaded: true, wantReason: "unexpected end of JSON input", wantAside: true},
		{name: "zeroed", files: files{recordFile: "ZEROED"}, wantLoaded: true, wantReason: "invalid character", wantAside: true},
		{name: "another container's", files: files{recordFile: "OTHER"}, wantLoaded: true, wantReason: "names container", wantAside: true},
		{name: "missing", files: files{"exit.json": `{"status":"exited","exitCode":3}`}, bundle: true, wantLoaded: true, wantReason: "record missing"},
		{name: "set aside before", files: files{quarantinePrefix + "20260101T000000Z": "\x00\x00"}, wantLoaded: true, wantReason: "set aside as " + quarantinePrefix + "20260101T000000Z", wantAside: true},
		{name: "only a bundle", bundle: true, wantLoaded: true, wantReason: "found its bundle"},
		{name: "interrupted create", files: files{creatingMarker: ""}, bundle: true, wantGone: true},
		{name: "create interrupted after its first record", files: files{creatingMarker: "", recordFile: "FIRST"}, bundle: true, wantGone: true},
		{name: "complete create, marker left", files: files{creatingMarker: "", recordFile: "RECORD"}, bundle: true, wantLoaded: true},
		{name: "interrupted remove", files: files{removingMarker: ""}, bundle: true, wantGone: true},
		{name: "remove begun, record left", files: files{removingMarker: "", recordFile: "RECORD"}, bundle: true, wantGone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := DefaultConfig()
			cfg.Root, cfg.RunDir = filepath.Join(dir, "lib"), filepath.Join(dir, "run")
			cfg.Runtime, cfg.ShimCommand, cfg.Images = "/bin/false", []string{"/bin/false"}, noImages{}
			id := strings.Repeat("ab", 32)
			cdir, bdir := filepath.Join(cfg.Root, "containers", id), filepath.Join(cfg.RunDir, "containers", id)
			writeState(t, id, cdir, tc.files)
			if tc.bundle {
				writeState(t, id, bdir, map[string]string{"config.json": `{"process":{"args":["sleep","1000"]},"root":{"path":"/r"}}`})
			}
			a, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			c, err := a.Inspect(t.Context(), id)
			if (err == nil) != tc.wantLoaded {
				t.Fatalf("inspect after the restart: %v; want loaded %v", err, tc.wantLoaded)
			}
			if tc.wantLoaded && !strings.Contains(c.Quarantine, tc.wantReason) || tc.wantReason == "" && c.Quarantine != "" {
				t.Errorf("quarantine reason %q, want it to say %q", c.Quarantine, tc.wantReason)
			}
			if tc.name == "missing" && (c.State.Status != api.StateExited || c.State.ExitCode != 3) {
				t.Errorf("quarantined container's state %+v, want its exit file's", c.State)
			}
			if tc.wantReason != "" && tc.bundle && strings.Join(c.Command, " ") != "sleep 1000" {
				t.Errorf("quarantined container's command %q, want the bundle's", c.Command)
			}
			aside, _ := filepath.Glob(filepath.Join(cdir, quarantinePrefix+"*"))
			if (len(aside) == 1) != tc.wantAside {
				t.Errorf("set-aside records %q, want one: %v", aside, tc.wantAside)
			}
			for _, d := range []string{cdir, bdir} {
				_, err := os.Stat(d)
				existed := d == cdir && tc.files != nil || d == bdir && tc.bundle
				if gone := err != nil; existed && gone != tc.wantGone {
					t.Errorf("%s: removed %v, want %v", d, gone, tc.wantGone)
				}
			}
		})
	}
}

// writeState makes dir with files, where the contents RECORD, TRUNCATED, ZEROED, OTHER and FIRST stand
// for container id's record, cut in half, zeroed, another container's and the first record of a create
// (no pid yet).
func writeState(t *testing.T, id, dir string, fs map[string]string) {
	t.Helper()
	if fs == nil {
		return
	}
	rec, _ := json.Marshal(api.Container{ID: id, Name: "c", State: api.ContainerState{Status: api.StateExited}})
	other, _ := json.Marshal(api.Container{ID: strings.Repeat("cd", 32), Name: "d"})
	first, _ := json.Marshal(api.Container{ID: id, Name: "c", State: api.ContainerState{Status: api.StateCreated}}) // no pid, no endpoints yet
	content := map[string][]byte{"RECORD": rec, "TRUNCATED": rec[:len(rec)/2], "ZEROED": make([]byte, len(rec)), "OTHER": other, "FIRST": first}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, s := range fs {
		b, ok := content[s]
		if !ok {
			b = []byte(s)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
