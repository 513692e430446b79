package postgres

import (
	"context"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Internals for the tests of package postgres_test, which cannot live in
// this package: pgtest imports it.

// AppendUnchecked is Append without Message.Check: a value the database
// refuses reaches the writer, as one the check misses would.
func (s *Store) AppendUnchecked(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error) {
	return s.append(ctx, m)
}

// SaveCursorsUnchecked is SaveCursors without Cursor.Check. It returns how
// many cursors the database refused.
func (s *Store) SaveCursorsUnchecked(ctx context.Context, cs []storage.Cursor) (int, error) {
	d, err := s.saveCursors(ctx, cs)
	return d.dropped, err
}

// Queued returns how many appends wait for the writer of shard i.
func (s *Store) Queued(i int) int { return s.shards[i].Queued() }
