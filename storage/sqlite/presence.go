package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/parleychat/parley/storage"
)

var _ storage.Presence = (*Store)(nil)

// SetLastSeen upserts last-seen times in one write of the writer; a time
// never moves back, and users that do not exist (any more) are skipped.
func (s *Store) SetLastSeen(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO presence (user_id, last_seen)
			SELECT id, ? FROM users WHERE id = ?
			ON CONFLICT (user_id) DO UPDATE SET last_seen = max(coalesce(presence.last_seen, 0), excluded.last_seen)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for u, t := range seen {
			if _, err := st.ExecContext(ctx, t.UnixMicro(), u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set last seen: %w", classify(err))
	}
	return nil
}

// LastSeen returns the last-seen times of those users that have one.
func (s *Store) LastSeen(ctx context.Context, users []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(users))
	if len(users) == 0 {
		return out, nil
	}
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, fmt.Errorf("last seen: %w", err)
	}
	defer cancel()
	// One parameter whatever the number of users: a JSON array, read by
	// json_each (SQLite limits the number of parameters of a statement).
	ids, err := json.Marshal(users)
	if err != nil {
		return nil, fmt.Errorf("last seen: %w", err)
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT user_id, last_seen FROM presence
		WHERE user_id IN (SELECT value FROM json_each(?)) AND last_seen IS NOT NULL`, string(ids))
	if err != nil {
		return nil, fmt.Errorf("last seen: %w", s.readErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var us int64
		if err := rows.Scan(&u, &us); err != nil {
			return nil, fmt.Errorf("last seen: %w", s.readErr(err))
		}
		out[u] = time.UnixMicro(us)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("last seen: %w", s.readErr(err))
	}
	return out, nil
}

// SetPresencePrivacy sets a user's privacy, or returns ErrNotFound.
func (s *Store) SetPresencePrivacy(ctx context.Context, user, privacy string) error {
	if !storage.ValidPrivacy(privacy) {
		return fmt.Errorf("set presence privacy: invalid privacy %q", privacy)
	}
	err := s.writeOne(ctx, fmt.Errorf("user %s: %w", user, storage.ErrNotFound), `INSERT INTO presence (user_id, privacy)
		SELECT id, ? FROM users WHERE id = ?
		ON CONFLICT (user_id) DO UPDATE SET privacy = excluded.privacy`, privacy, user)
	if err != nil {
		return fmt.Errorf("set presence privacy: %w", classify(err))
	}
	return nil
}

// PresencePrivacy returns a user's privacy (everyone unless set), or
// ErrNotFound for an unknown user.
func (s *Store) PresencePrivacy(ctx context.Context, user string) (string, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return "", fmt.Errorf("presence privacy: %w", err)
	}
	defer cancel()
	var p string
	if err := s.rdb.QueryRowContext(ctx, `SELECT coalesce(p.privacy, ?) FROM users u
		LEFT JOIN presence p ON p.user_id = u.id WHERE u.id = ? AND u.deleted_at IS NULL`, storage.PrivacyEveryone, user).Scan(&p); err != nil {
		return "", fmt.Errorf("presence privacy: %w", s.readErr(err))
	}
	return p, nil
}
