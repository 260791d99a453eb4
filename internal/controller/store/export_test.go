package store

import "context"

// ParseKey exposes parseKey to the tests of package store_test.
var ParseKey = parseKey

// Compact compacts etcd's history up to rev, for tests of watches that resume from a compacted
// revision.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	_, err := s.cli.Compact(ctx, rev)
	return err
}
