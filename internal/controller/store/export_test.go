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

// WeakenEmbedded takes away the permissions that protect the embedded etcd's socket (mode 0777 on the
// socket and its directories), so that the attack tests can show they fail without them. It returns
// the function that puts them back.
func WeakenEmbedded() (restore func()) {
	s, d := socketMode, dirMode
	socketMode, dirMode = 0o777, 0o777
	return func() { socketMode, dirMode = s, d }
}
