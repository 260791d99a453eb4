package image

import (
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ovnet/ov/internal/errdefs"
)

// NormalizeRef turns an image reference into the "name:tag" form the store keys images by: the tag
// defaults to "latest", and Docker Hub's implicit prefixes (docker.io/, docker.io/library/,
// index.docker.io/...) are dropped, so "busybox", "busybox:latest" and "docker.io/library/busybox"
// are one reference. Digest references (name@sha256:...) are not tags and are refused.
func NormalizeRef(ref string) (string, error) {
	if strings.Contains(ref, "@") {
		return "", errf(errdefs.ErrInvalidArgument, "image reference %q: digest references are not supported; use NAME[:TAG] or an image ID", ref)
	}
	t, err := name.NewTag(ref)
	if err != nil {
		return "", errf(errdefs.ErrInvalidArgument, "image reference %q: %v", ref, err)
	}
	repo := t.RepositoryStr()
	if reg := t.RegistryStr(); reg != name.DefaultRegistry {
		repo = reg + "/" + repo
	} else {
		repo = strings.TrimPrefix(repo, "library/")
	}
	return repo + ":" + t.TagStr(), nil
}

func defaultPlatform() string { return "linux/" + runtime.GOARCH }
