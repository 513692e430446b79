package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

var _ storage.Reads = (*Store)(nil)

// SetReadCursor moves a read cursor forward and returns where it was.
func (s *Store) SetReadCursor(ctx context.Context, c storage.ReadCursor) (int64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var prev int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, "SELECT seq FROM read_cursors WHERE user_id = $1 AND inbox = $2 AND conv = $3 FOR UPDATE",
			c.User, c.Inbox, c.Conv).Scan(&prev)
		if err != nil && err != pgx.ErrNoRows {
			return err
		}
		if c.Seq <= prev {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO read_cursors (user_id, inbox, conv, seq) VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id, inbox, conv) DO UPDATE SET seq = EXCLUDED.seq, updated_at = now()`,
			c.User, c.Inbox, c.Conv, c.Seq)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("set read cursor: %w", classify(err))
	}
	return prev, nil
}

// GetReadCursor returns a read cursor, 0 if there is none.
func (s *Store) GetReadCursor(ctx context.Context, user, inbox, conv string) (int64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var seq int64
	err := s.pool.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM read_cursors WHERE user_id = $1 AND inbox = $2 AND conv = $3",
		user, inbox, conv).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("get read cursor: %w", classify(err))
	}
	return seq, nil
}

// Unread lists messages from others in a range of an inbox.
func (s *Store) Unread(ctx context.Context, reader, inbox, conv string, after, upTo int64, limit int) ([]protocol.Entry, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT "+entryColumns+` FROM entries
		WHERE inbox = $1 AND seq > $2 AND seq <= $3 AND kind = 'msg' AND sender <> $4 AND ($5 = '' OR conv = $5)
		ORDER BY seq LIMIT $6`, inbox, after, upTo, reader, conv, limit)
	if err != nil {
		return nil, fmt.Errorf("unread: %w", classify(err))
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("unread: %w", classify(err))
	}
	return es, nil
}

// CountReaders returns how many users other than except have read inbox up
// to seq or further.
func (s *Store) CountReaders(ctx context.Context, inbox string, seq int64, except string) (int, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM read_cursors WHERE inbox = $1 AND conv = '' AND seq >= $2 AND user_id <> $3`,
		inbox, seq, except).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count readers: %w", classify(err))
	}
	return n, nil
}

// Conversations returns a user's direct conversations and groups, most
// recent first.
func (s *Store) Conversations(ctx context.Context, user string) ([]storage.Conversation, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	own := protocol.UserInbox(user)
	// One row per conversation: its newest entry, its read cursor (for a
	// direct one the later of the conversation's and the whole inbox's),
	// and the messages from others after it. A group member sees neither
	// entries nor unread messages below its from_seq.
	rows, err := s.pool.Query(ctx, `
		WITH convs AS (
			SELECT peer AS peer, '' AS grp, $2::text AS inbox, peer AS conv, 0::bigint AS from_seq FROM contacts WHERE user_id = $1
			UNION ALL
			SELECT '', m.group_id, 'g/' || m.group_id, '', CASE WHEN g.history = 'full' THEN 0 ELSE m.from_seq END
			FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.user_id = $1 AND m.removed_seq IS NULL
		), cur AS (
			SELECT c.*, greatest(
				coalesce((SELECT seq FROM read_cursors r WHERE r.user_id = $1 AND r.inbox = c.inbox AND r.conv = c.conv), 0),
				CASE WHEN c.grp = '' THEN coalesce((SELECT seq FROM read_cursors r WHERE r.user_id = $1 AND r.inbox = $2 AND r.conv = ''), 0) ELSE 0 END
			) AS read_seq FROM convs c
		)
		SELECT cur.peer, cur.grp, cur.read_seq,
			(SELECT count(*) FROM entries u WHERE u.inbox = cur.inbox AND (cur.grp <> '' OR u.conv = cur.conv)
				AND u.kind = 'msg' AND u.sender <> $1 AND u.seq > cur.read_seq AND u.seq >= cur.from_seq),
			e.inbox, e.seq, e.id::text, e.sender, e.recipient, e.ts, e.kind, e.cid, e.data
		FROM cur LEFT JOIN LATERAL (
			SELECT * FROM entries x WHERE x.inbox = cur.inbox AND (cur.grp <> '' OR x.conv = cur.conv) AND x.seq >= cur.from_seq
			ORDER BY x.seq DESC LIMIT 1
		) e ON true
		ORDER BY e.ts DESC NULLS LAST, cur.peer, cur.grp`, user, own)
	if err != nil {
		return nil, fmt.Errorf("conversations: %w", classify(err))
	}
	defer rows.Close()
	var out []storage.Conversation
	for rows.Next() {
		var c storage.Conversation
		var inbox, id, from, to, kind, cid *string
		var seq, ts *int64
		var data []byte
		if err := rows.Scan(&c.Peer, &c.Group, &c.ReadSeq, &c.Unread, &inbox, &seq, &id, &from, &to, &ts, &kind, &cid, &data); err != nil {
			return nil, fmt.Errorf("conversations: %w", classify(err))
		}
		if inbox != nil {
			c.Last = &protocol.Entry{Inbox: *inbox, Seq: *seq, ID: *id, From: *from, To: *to, TS: *ts, Type: *kind, Cid: *cid, Data: data}
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("conversations: %w", classify(err))
	}
	return out, nil
}
