package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/parleychat/parley/storage"
)

var _ storage.Presence = (*Store)(nil)

// SetLastSeen upserts last-seen times in one statement; a time never moves
// back, and users that do not exist (any more) are skipped rather than
// failing the batch.
func (s *Store) SetLastSeen(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	users := make([]string, 0, len(seen))
	times := make([]time.Time, 0, len(seen))
	for u, t := range seen {
		users, times = append(users, u), append(times, t)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err := s.pool.Exec(ctx, `INSERT INTO presence (user_id, last_seen)
		SELECT x.u, x.t FROM unnest($1::text[], $2::timestamptz[]) AS x(u, t)
		WHERE EXISTS (SELECT 1 FROM users WHERE id = x.u)
		ON CONFLICT (user_id) DO UPDATE SET last_seen = GREATEST(presence.last_seen, EXCLUDED.last_seen)`,
		users, times)
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
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT user_id, last_seen FROM presence WHERE user_id = ANY($1) AND last_seen IS NOT NULL", users)
	if err != nil {
		return nil, fmt.Errorf("last seen: %w", classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var t time.Time
		if err := rows.Scan(&u, &t); err != nil {
			return nil, fmt.Errorf("last seen: %w", classify(err))
		}
		out[u] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("last seen: %w", classify(err))
	}
	return out, nil
}

// SetPresencePrivacy sets a user's privacy, or returns ErrNotFound.
func (s *Store) SetPresencePrivacy(ctx context.Context, user, privacy string) error {
	if !storage.ValidPrivacy(privacy) {
		return fmt.Errorf("set presence privacy: invalid privacy %q", privacy)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `INSERT INTO presence (user_id, privacy)
		SELECT id, $2 FROM users WHERE id = $1
		ON CONFLICT (user_id) DO UPDATE SET privacy = EXCLUDED.privacy`, user, privacy)
	if err != nil {
		return fmt.Errorf("set presence privacy: %w", classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set presence privacy: user %s: %w", user, storage.ErrNotFound)
	}
	return nil
}

// PresencePrivacy returns a user's privacy (everyone unless set), or
// ErrNotFound for an unknown user.
func (s *Store) PresencePrivacy(ctx context.Context, user string) (string, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var p string
	err := s.pool.QueryRow(ctx, `SELECT coalesce(p.privacy, $2) FROM users u
		LEFT JOIN presence p ON p.user_id = u.id WHERE u.id = $1 AND u.deleted_at IS NULL`, user, storage.PrivacyEveryone).Scan(&p)
	if err != nil {
		return "", fmt.Errorf("presence privacy: %w", classify(err))
	}
	return p, nil
}
