package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.uber.org/zap"

	"github.com/ovnet/ov/internal/atomicfile"
	"github.com/ovnet/ov/internal/errdefs"
)

// DefaultBumpRevision is what RestoreSnapshot adds to the snapshot's revision by default: more than
// the changes any cluster makes between a backup and a restore (etcd's own advice), far below where
// revisions run out (2^63).
const DefaultBumpRevision = 1_000_000_000

// Snapshot writes a snapshot of the whole etcd keyspace (what `etcdctl snapshot save` writes: the
// database followed by its SHA-256) to path, 0600. It returns the size written.
func (s *Store) Snapshot(ctx context.Context, path string) (int64, error) {
	rc, err := s.cli.Snapshot(ctx)
	if err != nil {
		return 0, s.wrap("snapshot", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return 0, s.wrap("snapshot", err)
	}
	if err := atomicfile.WriteSync(path, b, 0o600); err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	return int64(len(b)), nil
}

// RestoreConfig says what RestoreSnapshot restores and where.
type RestoreConfig struct {
	// Snapshot is a file written by Snapshot, `etcdctl snapshot save` or a copy of member/snap/db.
	Snapshot string
	// Dir is the new data directory of the embedded etcd (EmbedConfig.Dir); it must not exist.
	Dir string
	// BumpRevision is added to the snapshot's revision, so that the restored store's revisions are
	// above every revision a watcher saw before the restore. Watchers (agents) that resume from a
	// revision the restored store never had would otherwise miss changes. Must be > 0.
	BumpRevision int64
	// MarkCompacted marks the restored revision compacted, so that every watcher resuming from an older
	// revision is told so and lists afresh. Without it, a watcher whose revision falls in the bumped
	// gap waits there silently.
	MarkCompacted bool
}

// RestoreResult tells what RestoreSnapshot did.
type RestoreResult struct {
	// Revision is the snapshot's revision; Bumped the restored store's (Revision + BumpRevision).
	Revision, Bumped int64
}

// RestoreSnapshot makes cfg.Dir the data directory of a single-member embedded etcd holding the
// snapshot's keys, as `etcdutl snapshot restore --bump-revision N --mark-compacted` does (Debian's
// etcdctl 3.4 cannot bump): it checks the snapshot's SHA-256 when it has one, drops the old cluster's
// membership and raft position, raises the revision by cfg.BumpRevision and, with cfg.MarkCompacted,
// marks it compacted. StartEmbedded on cfg.Dir then starts a new cluster with that data.
func RestoreSnapshot(cfg RestoreConfig) (RestoreResult, error) {
	if cfg.BumpRevision <= 0 {
		return RestoreResult{}, fmt.Errorf("restore %s: give a revision bump above 0 (default %d): agents resume their watches from revisions above the snapshot's and would miss changes: %w",
			cfg.Snapshot, int64(DefaultBumpRevision), errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(cfg.Dir); err == nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %s exists; move the old etcd data directory away first: %w", cfg.Snapshot, cfg.Dir, errdefs.ErrAlreadyExists)
	}
	db, err := readSnapshot(cfg.Snapshot)
	if err != nil {
		return RestoreResult{}, err
	}
	snapDir := filepath.Join(cfg.Dir, "member", "snap")
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "member"), snapDir} {
		if err := privateDir(d); err != nil {
			return RestoreResult{}, err
		}
	}
	dbPath := filepath.Join(snapDir, "db")
	if err := atomicfile.WriteSync(dbPath, db, 0o600); err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", cfg.Snapshot, err)
	}
	res, err := rewriteBackend(dbPath, cfg)
	if err != nil {
		_ = os.RemoveAll(cfg.Dir)
		return RestoreResult{}, fmt.Errorf("restore %s: %w", cfg.Snapshot, err)
	}
	return res, nil
}

// readSnapshot reads a snapshot file and checks and strips the SHA-256 that `snapshot save` appends
// (a database file is a whole number of 512-byte pages; a snapshot with its hash is 32 bytes more).
func readSnapshot(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if len(b)%512 == sha256.Size {
		db, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
		if h := sha256.Sum256(db); !bytes.Equal(h[:], sum) {
			return nil, fmt.Errorf("restore %s: the snapshot's SHA-256 does not match its content: the file is damaged; use another backup: %w", path, errdefs.ErrInvalidArgument)
		}
		return db, nil
	}
	if len(b) == 0 || len(b)%512 != 0 {
		return nil, fmt.Errorf("restore %s: not an etcd snapshot (size %d); give a file written by `etcdctl snapshot save` or `ovcontroller snapshot save`: %w", path, len(b), errdefs.ErrInvalidArgument)
	}
	return b, nil
}

// rewriteBackend prepares the restored database at path for a new single-member cluster: see
// RestoreSnapshot.
func rewriteBackend(path string, cfg RestoreConfig) (res RestoreResult, err error) {
	be := backend.NewDefaultBackend(zap.NewNop(), path)
	defer func() {
		be.ForceCommit()
		if cerr := be.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if err := schema.NewMembershipBackend(zap.NewNop(), be).TrimMembershipFromBackend(); err != nil {
		return res, err
	}
	tx := be.BatchTx()
	tx.LockOutsideApply()
	defer tx.Unlock()
	var latest mvcc.Revision
	err = tx.UnsafeForEach(schema.Key, func(k, _ []byte) error {
		if rev := mvcc.BytesToRev(k); rev.GreaterThan(latest) {
			latest = rev
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if latest.Main == 0 {
		return res, errors.New("the snapshot holds no revision: it is not an etcd v3 database")
	}
	res.Revision = latest.Main
	res.Bumped = latest.Main + cfg.BumpRevision
	// The new latest revision: an empty record at the bumped revision, as etcdutl writes it.
	tx.UnsafePut(schema.Key, mvcc.RevToBytes(mvcc.Revision{Main: res.Bumped}, mvcc.NewRevBytes()), []byte{})
	if cfg.MarkCompacted {
		mvcc.UnsafeSetScheduledCompact(tx, res.Bumped)
	}
	// The new cluster's raft log starts again at index 1: entries at or below the old consistent
	// index would be skipped as applied.
	for _, k := range [][]byte{schema.MetaConsistentIndexKeyName, schema.MetaTermKeyName, schema.MetaConfStateName} {
		tx.UnsafeDelete(schema.Meta, k)
	}
	return res, nil
}
