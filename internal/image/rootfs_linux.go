package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/ovnet/ov/internal/atomicfile"
	"github.com/ovnet/ov/internal/errdefs"
)

// Prepared describes a container rootfs made by Prepare and not yet released.
type Prepared struct {
	ContainerID string `json:"containerId"`
	ImageID     string `json:"imageId"`
	Rootfs      string `json:"rootfs"`
	Mounted     bool   `json:"mounted"`
}

func (s *Store) containerDir(id string) string { return filepath.Join(s.root, "containers", id) }

// RootfsPath returns where containerID's rootfs is (or would be) mounted.
func (s *Store) RootfsPath(containerID string) string {
	return filepath.Join(s.containerDir(containerID), "rootfs")
}

func validContainerID(id string) error {
	ok := id != "" && id != "." && id != ".." && len(id) <= 128
	for _, c := range id {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			ok = false
		}
	}
	if !ok {
		return errf(errdefs.ErrInvalidArgument, "container ID %q: use 1-128 letters, digits, '-', '_' or '.'", id)
	}
	return nil
}

// readContainers learns the prepared containers from containers/<id>/image.
func (s *Store) readContainers() error {
	entries, err := os.ReadDir(filepath.Join(s.root, "containers"))
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(s.containerDir(e.Name()), "image"))
		if err != nil {
			s.log.Warn("container dir without image record; Release it", "container", e.Name(), "err", err)
			continue
		}
		s.containers[e.Name()] = strings.TrimSpace(string(data))
	}
	return nil
}

// Prepare gives containerID a copy-on-write rootfs of image ref and returns its path: an overlayfs
// mount whose lower dirs are the image's shared layer directories and whose upper and work dirs are
// the container's own. It is idempotent: when the rootfs is mounted already it is returned as is, and
// after Unmount (or a reboot) it is mounted again over the same upper dir, keeping the container's
// changes. Preparing an existing container from another image is errdefs.ErrConflict. While
// prepared, the image cannot be removed.
func (s *Store) Prepare(ctx context.Context, containerID, ref string) (string, error) {
	if err := validContainerID(containerID); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img, _, err := s.resolveLocked(ref)
	if err != nil {
		return "", err
	}
	if cur, ok := s.containers[containerID]; ok && cur != img.ID {
		return "", errf(errdefs.ErrConflict, "container %s was prepared from image %s, not %s (%s); release it first", containerID, shortID(cur), ref, shortID(img.ID))
	}
	dir := s.containerDir(containerID)
	rootfs := s.RootfsPath(containerID)
	if m, err := isMounted(rootfs); err != nil {
		return "", fmt.Errorf("prepare rootfs of %s: %w", containerID, err)
	} else if m {
		return rootfs, nil
	}
	if len(img.Layers) == 0 {
		return "", errf(errdefs.ErrInvalidArgument, "image %q has no layers; it cannot be a container's rootfs", ref)
	}
	lowers := make([]string, 0, len(img.Layers))
	for i, l := range slices.Backward(img.Layers) {
		d, ok := s.lowerDir(l, i == 0)
		if !ok {
			return "", errf(errdefs.ErrNotFound, "image %q: layer %s is missing from the store; remove the image and load it again", ref, shortID(l))
		}
		lowers = append(lowers, d)
	}
	_, existed := s.containers[containerID]
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	if err := s.makeContainerDirs(dir, upper, work, rootfs, lowers[0], img.ID); err != nil {
		if !existed {
			os.RemoveAll(dir)
		}
		return "", fmt.Errorf("prepare rootfs of %s: %w", containerID, err)
	}
	s.containers[containerID] = img.ID
	if err := mountOverlay(lowers, upper, work, rootfs, s.forceFsopen); err != nil {
		if !existed {
			delete(s.containers, containerID)
			os.RemoveAll(dir)
		}
		return "", fmt.Errorf("prepare rootfs of %s: mount overlayfs: %w", containerID, err)
	}
	s.log.Debug("prepared rootfs", "container", containerID, "image", img.ID, "rootfs", rootfs)
	return rootfs, nil
}

// makeContainerDirs creates the container's directories and records its image. A new upper dir
// takes the owner and mode of the image's root directory (the top layer's), which is what "/" shows.
func (s *Store) makeContainerDirs(dir, upper, work, rootfs, top, imageID string) error {
	if err := privateDir(dir); err != nil {
		return err
	}
	if _, err := os.Stat(upper); errors.Is(err, fs.ErrNotExist) {
		var st unix.Stat_t
		if err := unix.Stat(top, &st); err != nil {
			return err
		}
		if err := os.Mkdir(upper, 0o755); err != nil {
			return err
		}
		if err := os.Chown(upper, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := unix.Chmod(upper, st.Mode&0o7777); err != nil {
			return err
		}
	}
	// work/ is overlayfs's alone. rootfs/ is the mount point: made 0700, never chmod'ed (when mounted,
	// its mode is the container's "/").
	if err := privateDir(work); err != nil {
		return err
	}
	if err := os.MkdirAll(rootfs, privateMode); err != nil {
		return err
	}
	path := filepath.Join(dir, "image")
	if err := atomicfile.WriteSync(path, []byte(imageID+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// dir may be new: its name (and with it the container's upper dir) is durable once its parent is
	// flushed.
	return atomicfile.SyncDir(filepath.Dir(dir))
}

// mountOverlay mounts overlayfs at target. Options longer than a page (many layers) are passed one
// lower dir at a time with fsopen/fsconfig ("lowerdir+", Linux 6.8+).
func mountOverlay(lowers []string, upper, work, target string, forceFsopen bool) error {
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), upper, work)
	if !forceFsopen && len(opts) < os.Getpagesize()-1 {
		return unix.Mount("overlay", target, "overlay", 0, opts)
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen (needed for %d layers): %w", len(lowers), err)
	}
	defer unix.Close(fsfd)
	for _, l := range lowers {
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
			return fmt.Errorf("overlayfs lowerdir+ %s (Linux 6.8+ is needed for images with this many layers): %w", l, err)
		}
	}
	if err := unix.FsconfigSetString(fsfd, "upperdir", upper); err != nil {
		return fmt.Errorf("overlayfs upperdir: %w", err)
	}
	if err := unix.FsconfigSetString(fsfd, "workdir", work); err != nil {
		return fmt.Errorf("overlayfs workdir: %w", err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("overlayfs create: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

func isMounted(path string) (bool, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return mountinfo.Mounted(path)
}

// unmountAll unmounts everything stacked on path; a busy mount is detached lazily.
func unmountAll(path string) error {
	for range 32 {
		m, err := isMounted(path)
		if err != nil || !m {
			return err
		}
		if err := unix.Unmount(path, 0); err != nil {
			if errors.Is(err, unix.EBUSY) {
				err = unix.Unmount(path, unix.MNT_DETACH)
			}
			if err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("unmount %s: %w", path, err)
			}
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 32 unmounts", path)
}

// Mounted reports whether containerID's rootfs is mounted.
func (s *Store) Mounted(containerID string) (bool, error) {
	if err := validContainerID(containerID); err != nil {
		return false, err
	}
	return isMounted(s.RootfsPath(containerID))
}

// Unmount unmounts containerID's rootfs but keeps its upper dir (its changes), so that Prepare can
// mount it again, e.g. when a stopped container starts again. Unknown or unmounted containers are not
// an error. The image stays in use until Release.
func (s *Store) Unmount(ctx context.Context, containerID string) error {
	if err := validContainerID(containerID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return unmountAll(s.RootfsPath(containerID))
}

// Release unmounts containerID's rootfs and removes its upper, work and mount dirs: the container's
// changes are gone and its image is no longer in use by it. Releasing an unknown container is not an
// error, so Release is idempotent.
func (s *Store) Release(ctx context.Context, containerID string) error {
	if err := validContainerID(containerID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := unmountAll(s.RootfsPath(containerID)); err != nil {
		return fmt.Errorf("release rootfs of %s: %w", containerID, err)
	}
	if err := os.RemoveAll(s.containerDir(containerID)); err != nil {
		return fmt.Errorf("release rootfs of %s: %w", containerID, err)
	}
	delete(s.containers, containerID)
	s.log.Debug("released rootfs", "container", containerID)
	return nil
}

// Prepared lists the containers prepared and not released, e.g. for the agent to reconcile them with
// the containers it knows after a restart.
func (s *Store) Prepared(ctx context.Context) ([]Prepared, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Prepared, 0, len(s.containers))
	for c, img := range s.containers {
		p := Prepared{ContainerID: c, ImageID: img, Rootfs: s.RootfsPath(c)}
		m, err := isMounted(p.Rootfs)
		if err != nil {
			return nil, err
		}
		p.Mounted = m
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Prepared) int { return strings.Compare(a.ContainerID, b.ContainerID) })
	return out, nil
}
