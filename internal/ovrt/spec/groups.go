package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ovrt/rootdir"
)

// additionalGids returns the supplementary groups of the container's process as Docker gives them:
// the user's primary group, the groups of the image's /etc/group that list the user's name as a
// member (unless User names a group explicitly, "user:group"), then o.GroupAdd (--group-add: names
// looked up in /etc/group, else numeric GIDs). Root (User empty) is looked up as uid 0.
func additionalGids(o Options, u specs.User) ([]uint32, error) {
	gids := []uint32{u.GID}
	name, _, explicitGroup := strings.Cut(o.User, ":")
	var groups [][]string
	if o.Rootfs != "" {
		// An image without a readable /etc/group (none, a FIFO, too large) has no groups to add,
		// as with Docker; a --group-add name then finds no group.
		groups, _ = readColonFile(o.Rootfs, "etc/group")
	}
	if !explicitGroup && o.Rootfs != "" {
		if name == "" || isNumber(name) {
			name = userName(o.Rootfs, u.UID)
		}
		for _, g := range groups {
			if len(g) > 3 && name != "" && slices.Contains(strings.Split(g[3], ","), name) {
				if gid, err := strconv.ParseUint(g[2], 10, 32); err == nil {
					gids = append(gids, uint32(gid))
				}
			}
		}
	}
	for _, ga := range o.GroupAdd {
		gid, err := groupID(ga, groups, o.Rootfs)
		if err != nil {
			return nil, err
		}
		gids = append(gids, gid)
	}
	return uniq(gids), nil
}

// groupID resolves one --group-add: a name of the image's /etc/group wins, else a numeric GID.
func groupID(g string, groups [][]string, rootfs string) (uint32, error) {
	for _, f := range groups {
		if len(f) > 2 && f[0] == g {
			if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
				return uint32(gid), nil
			}
		}
	}
	if gid, err := strconv.ParseUint(g, 10, 32); err == nil {
		return uint32(gid), nil
	}
	return 0, fmt.Errorf("--group-add %q: no such group in %s; give a group of the image or a numeric GID: %w", g, filepath.Join(rootfs, "etc/group"), errdefs.ErrInvalidArgument)
}

// userName is the name of uid in the image's /etc/passwd, or "".
func userName(rootfs string, uid uint32) string {
	users, _ := readColonFile(rootfs, "etc/passwd")
	for _, f := range users {
		if len(f) > 2 && f[2] == strconv.FormatUint(uint64(uid), 10) {
			return f[0]
		}
	}
	return ""
}

// readColonFile reads the image's passwd or group file (inside rootfs, a regular file of at most
// MaxUserFile bytes; see lookup) as lines of fields. A missing file has no lines.
func readColonFile(rootfs, file string) ([][]string, error) {
	root, err := rootdir.Open(rootfs)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	b, err := root.ReadFile(file, MaxUserFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, strings.Split(line, ":"))
		}
	}
	return out, nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

func uniq(gids []uint32) []uint32 {
	out := gids[:0:0]
	for _, g := range gids {
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}
