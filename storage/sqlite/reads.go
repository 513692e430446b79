package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

var _ storage.Reads = (*Store)(nil)

// SetReadCursor moves a read cursor forward and returns where it was.
func (s *Store) SetReadCursor(ctx context.Context, c storage.ReadCursor) (int64, error) {
	var prev int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, "SELECT seq FROM read_cursors WHERE user_id = ? AND inbox = ? AND conv = ?",
			c.User, c.Inbox, c.Conv).Scan(&prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if c.Seq <= prev {
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO read_cursors (user_id, inbox, conv, seq, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (user_id, inbox, conv) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at`,
			c.User, c.Inbox, c.Conv, c.Seq, time.Now().UnixMicro())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("set read cursor: %w", classify(err))
	}
	return prev, nil
}

// GetReadCursor returns a read cursor, 0 if there is none.
func (s *Store) GetReadCursor(ctx context.Context, user, inbox, conv string) (int64, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return 0, fmt.Errorf("get read cursor: %w", err)
	}
	defer cancel()
	var seq int64
	if err := s.rdb.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM read_cursors WHERE user_id = ? AND inbox = ? AND conv = ?",
		user, inbox, conv).Scan(&seq); err != nil {
		return 0, fmt.Errorf("get read cursor: %w", s.readErr(err))
	}
	return seq, nil
}

// Unread lists messages from others in a range of an inbox.
func (s *Store) Unread(ctx context.Context, reader, inbox, conv string, after, upTo int64, limit int) ([]protocol.Entry, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, fmt.Errorf("unread: %w", err)
	}
	defer cancel()
	rows, err := s.rdb.QueryContext(ctx, "SELECT "+entryColumns+` FROM entries
		WHERE inbox = ? AND seq > ? AND seq <= ? AND kind = 'msg' AND sender <> ? AND (? = '' OR conv = ?)
		ORDER BY seq LIMIT ?`, inbox, after, upTo, reader, conv, conv, limit)
	if err != nil {
		return nil, fmt.Errorf("unread: %w", s.readErr(err))
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("unread: %w", s.readErr(err))
	}
	return es, nil
}

// CountReaders returns how many users other than except have read inbox up
// to seq or further.
func (s *Store) CountReaders(ctx context.Context, inbox string, seq int64, except string) (int, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return 0, fmt.Errorf("count readers: %w", err)
	}
	defer cancel()
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM read_cursors WHERE inbox = ? AND conv = '' AND seq >= ? AND user_id <> ?`,
		inbox, seq, except).Scan(&n); err != nil {
		return 0, fmt.Errorf("count readers: %w", s.readErr(err))
	}
	return n, nil
}

// Conversations returns a user's direct conversations and groups, most
// recent first.
func (s *Store) Conversations(ctx context.Context, user string) ([]storage.Conversation, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, fmt.Errorf("conversations: %w", err)
	}
	defer cancel()
	out, err := s.conversations(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("conversations: %w", s.readErr(err))
	}
	return out, nil
}

func (s *Store) conversations(ctx context.Context, user string) ([]storage.Conversation, error) {
	own := protocol.UserInbox(user)
	// A group member sees neither entries nor unread messages below its
	// from_seq (from[i]).
	rows, err := s.rdb.QueryContext(ctx, `SELECT peer, '', 0 FROM contacts WHERE user_id = ?
		UNION ALL SELECT '', m.group_id, CASE WHEN g.history = 'full' THEN 0 ELSE m.from_seq END
		FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.user_id = ? AND m.removed_seq IS NULL`, user, user)
	if err != nil {
		return nil, err
	}
	var out []storage.Conversation
	var from []int64
	for rows.Next() {
		var c storage.Conversation
		var f int64
		if err := rows.Scan(&c.Peer, &c.Group, &f); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, c)
		from = append(from, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var inboxRead int64
	if err := s.rdb.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM read_cursors WHERE user_id = ? AND inbox = ? AND conv = ''",
		user, own).Scan(&inboxRead); err != nil {
		return nil, err
	}
	for i := range out {
		c := &out[i]
		inbox, conv, filter := own, c.Peer, " AND conv = ?"
		if c.Group != "" {
			inbox, conv, filter = protocol.GroupInbox(c.Group), "", " AND ? = ''"
		}
		if err := s.rdb.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM read_cursors WHERE user_id = ? AND inbox = ? AND conv = ?",
			user, inbox, conv).Scan(&c.ReadSeq); err != nil {
			return nil, err
		}
		if c.Group == "" {
			c.ReadSeq = max(c.ReadSeq, inboxRead)
		}
		if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM entries WHERE inbox = ? AND kind = 'msg' AND sender <> ? AND seq > ? AND seq >= ?"+filter,
			inbox, user, c.ReadSeq, from[i], conv).Scan(&c.Unread); err != nil {
			return nil, err
		}
		es, err := s.queryEntries(ctx, "SELECT "+entryColumns+" FROM entries WHERE inbox = ? AND seq >= ?"+filter+" ORDER BY seq DESC LIMIT 1", inbox, from[i], conv)
		if err != nil {
			return nil, err
		}
		if len(es) > 0 {
			c.Last = &es[0]
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		var a, b int64
		if out[i].Last != nil {
			a = out[i].Last.TS
		}
		if out[j].Last != nil {
			b = out[j].Last.TS
		}
		return a > b
	})
	return out, nil
}

func (s *Store) queryEntries(ctx context.Context, q string, args ...any) ([]protocol.Entry, error) {
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return scanEntries(rows)
}
