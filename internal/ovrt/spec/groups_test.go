package spec

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestAdditionalGids checks Docker's supplementary groups: the primary group, the groups that list
// the user as a member (not with an explicit user:group), then --group-add.
func TestAdditionalGids(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\nwheel:x:10:root\napp:x:1000:\naudio:x:29:app,other\nvideo:x:44:other\n# c\nstaff:x:50:\n20:x:70:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, user string
		add        []string
		want       []uint32
		wantErr    string
	}{
		{name: "root by default", want: []uint32{0, 10}},
		{name: "user name", user: "app", want: []uint32{1000, 29}},
		{name: "uid finds the name", user: "1000", want: []uint32{1000, 29}},
		{name: "explicit group: no member groups", user: "app:staff", want: []uint32{50}},
		{name: "unknown uid: primary only", user: "4242", want: []uint32{4242}},
		{name: "group-add name and gid", user: "app", add: []string{"video", "4000"}, want: []uint32{1000, 29, 44, 4000}},
		{name: "group-add name wins over number", user: "app", add: []string{"20"}, want: []uint32{1000, 29, 70}},
		{name: "group-add duplicate", user: "app", add: []string{"app"}, want: []uint32{1000, 29}},
		{name: "group-add unknown name", user: "app", add: []string{"ghost"}, wantErr: `--group-add "ghost": no such group`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Default(Options{ID: "c", Args: []string{"id"}, User: tc.user, Rootfs: rootfs, GroupAdd: tc.add})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Process.User.AdditionalGids; !slices.Equal(got, tc.want) {
				t.Errorf("additional gids = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("no rootfs: numeric only", func(t *testing.T) {
		s, err := Default(Options{ID: "c", Args: []string{"id"}, User: "5:6", GroupAdd: []string{"7"}})
		if err != nil || !slices.Equal(s.Process.User.AdditionalGids, []uint32{6, 7}) {
			t.Fatalf("gids %v err %v, want [6 7]", s.Process.User.AdditionalGids, err)
		}
	})
}
