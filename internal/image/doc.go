// Package image is ov's local image store: it loads `docker save` archives and OCI image archives,
// imports plain rootfs tarballs, lists, finds and removes images, and gives each container a
// copy-on-write rootfs (overlayfs) over the image's shared, read-only layers. It pulls images from and
// pushes them to OCI distribution registries (go-containerregistry): pulled layers take the same
// unpack path, digest checks and layer sharing as loaded ones.
// It is Linux-only (openat2, overlayfs) and needs root.
//
// On disk, under Config.Root (default /var/lib/ov/images):
//
//	index.json                     images (ID, tags, layer diff IDs, run config, size) and layer sizes
//	layers/sha256/<hex>/           one unpacked layer per diff ID, an overlayfs lower dir, shared
//	containers/<id>/image          the image ID a container's rootfs was prepared from
//	containers/<id>/{upper,work}   the container's own overlayfs upper and work dirs
//	containers/<id>/rootfs         the overlayfs mount point handed to the runtime
//	tmp/                           unpacking in progress; emptied when a Store is opened
//
// Invariants:
//   - Every directory the store makes for itself (the root, tmp/, layers/, layers/sha256/,
//     containers/, containers/<id>/ and its work/) is 0700, and New tightens any an older version left
//     open: a host user must not reach a container's files (setuid binaries, device nodes) by path.
//     Layer dirs and upper/ keep the image's "/" mode; their parents shut them off.
//   - A directory under layers/ is complete: layers are unpacked into tmp/ and renamed into place, and
//     the unpacked content is checked against the diff ID the image names, and flushed (syncfs) before
//     index.json names it. A crash mid-load leaves only tmp/ debris and unreferenced layers, both
//     removed by New.
//   - Nothing in an archive is written outside the directory it is unpacked into: every path is
//     resolved with openat2(RESOLVE_BENEATH); entries that try to leave are refused with
//     errdefs.ErrInvalidArgument naming the entry, and the partial layer is removed.
//   - index.json is replaced atomically (write, fsync, rename) under the Store's mutex.
//   - An image is removable only when no prepared container (Prepare without Release) uses it and the
//     Config.InUse hook, if set, does not claim it; a layer is removed with the last image naming it.
package image
