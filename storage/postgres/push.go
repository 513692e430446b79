package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/storage"
)

var _ storage.Push = (*Store)(nil)

// upsertPushDevice registers or refreshes a token. ON CONFLICT takes the
// existing row's lock and then judges it as it is: it moves to another user
// only if its session expired (a revoked one took the row with it) or its
// user was deleted; a row with no session stays with its live user. No row
// affected: the token is taken.
const upsertPushDevice = `INSERT INTO push_devices AS d (token, user_id, platform, environment, device, session, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, now())
	ON CONFLICT (token) DO UPDATE SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
		environment = EXCLUDED.environment, device = EXCLUDED.device, session = EXCLUDED.session, updated_at = now()
	WHERE d.user_id = EXCLUDED.user_id
		OR NOT EXISTS (SELECT 1 FROM users u WHERE u.id = d.user_id AND u.deleted_at IS NULL)
		OR (d.session IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.hash = d.session AND t.expires_at > now()))`

// evictPushDevices deletes a user's tokens beyond the cap $3, the least
// recently updated first, never the token $2 just registered.
const evictPushDevices = `DELETE FROM push_devices WHERE user_id = $1 AND token IN (
	SELECT token FROM push_devices WHERE user_id = $1
	ORDER BY token = $2 DESC, updated_at DESC, token DESC OFFSET $3)`

// PutPushDevice registers or refreshes a token bound to d.Session, unless
// another user's live session holds it, and evicts d.User's oldest tokens
// past maxDevices, in one transaction.
func (s *Store) PutPushDevice(ctx context.Context, d storage.PushDevice, maxDevices int) error {
	if err := d.Check(); err != nil {
		return fmt.Errorf("put push device: %w", err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The user's row, locked: registrations of one user take turns, so
		// that two at once cannot both stay under the cap; and a deleted
		// user registers nothing. NO KEY UPDATE leaves the foreign-key
		// checks of other writes naming the user alone.
		var one int
		err := tx.QueryRow(ctx, "SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL FOR NO KEY UPDATE", d.User).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %q: %w", d.User, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		var session []byte
		if len(d.Session) > 0 {
			// The session's row, held against its revocation until the
			// commit: the locks go token, then push tokens, as in a
			// revocation's cascade, so that the two cannot deadlock.
			session = d.Session
			err := tx.QueryRow(ctx, "SELECT 1 FROM tokens WHERE hash = $1 AND user_id = $2 FOR KEY SHARE", session, d.User).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("session of %q: %w", d.User, storage.ErrNotFound)
			}
			if err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, upsertPushDevice, d.Token, d.User, d.Platform, d.Environment, d.Device, session)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrPushTokenTaken
		}
		if maxDevices > 0 {
			_, err = tx.Exec(ctx, evictPushDevices, d.User, d.Token, maxDevices)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("put push device: %w", classifyFK(err))
	}
	return nil
}

// classifyFK maps a foreign-key violation (an unknown user) to ErrNotFound.
func classifyFK(err error) error {
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) && pgErr.SQLState() == "23503" {
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	}
	return classify(err)
}

// PushDevices returns a user's tokens, least recently updated first.
func (s *Store) PushDevices(ctx context.Context, user string) ([]storage.PushDevice, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	ds, err := s.pushDevices(ctx, s.pool, user)
	if err != nil {
		return nil, fmt.Errorf("push devices: %w", classify(err))
	}
	return ds, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Store) pushDevices(ctx context.Context, q querier, user string) ([]storage.PushDevice, error) {
	rows, err := q.Query(ctx, `SELECT token, user_id, platform, environment, device, session, updated_at
		FROM push_devices WHERE user_id = $1 ORDER BY updated_at, token`, user)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.PushDevice, error) {
		var d storage.PushDevice
		err := r.Scan(&d.Token, &d.User, &d.Platform, &d.Environment, &d.Device, &d.Session, &d.UpdatedAt)
		return d, err
	})
}

// DeletePushDevice removes a user's token, or returns ErrNotFound.
func (s *Store) DeletePushDevice(ctx context.Context, user, token string) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, "DELETE FROM push_devices WHERE token = $1 AND user_id = $2", token, user)
	if err != nil {
		return fmt.Errorf("delete push device: %w", classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete push device: %w", storage.ErrNotFound)
	}
	return nil
}

// RemovePushToken deletes an invalid token unless it was registered again
// after before.
func (s *Store) RemovePushToken(ctx context.Context, token string, before time.Time) (bool, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if before.IsZero() {
		before = time.Now().Add(24 * time.Hour)
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM push_devices WHERE token = $1 AND updated_at <= $2", token, before)
	if err != nil {
		return false, fmt.Errorf("remove push token: %w", classify(err))
	}
	return tag.RowsAffected() > 0, nil
}

// SetPushPreview sets a user's preview setting.
func (s *Store) SetPushPreview(ctx context.Context, user string, on bool) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	v := 0
	if on {
		v = 1
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO push_settings (user_id, preview) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET preview = EXCLUDED.preview`, user, v)
	if err != nil {
		return fmt.Errorf("set push preview: %w", classifyFK(err))
	}
	return nil
}

// SetPushMute mutes a conversation until until (zero: for ever).
func (s *Store) SetPushMute(ctx context.Context, user, conv string, until time.Time) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var u *time.Time
	if !until.IsZero() {
		u = &until
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO push_mutes (user_id, conv, until) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, conv) DO UPDATE SET until = EXCLUDED.until`, user, conv, u)
	if err != nil {
		return fmt.Errorf("set push mute: %w", classifyFK(err))
	}
	return nil
}

// DeletePushMute unmutes a conversation.
func (s *Store) DeletePushMute(ctx context.Context, user, conv string) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, "DELETE FROM push_mutes WHERE user_id = $1 AND conv = $2", user, conv); err != nil {
		return fmt.Errorf("delete push mute: %w", classify(err))
	}
	return nil
}

// PushProfile returns a user's settings, mutes and tokens.
func (s *Store) PushProfile(ctx context.Context, user string) (storage.PushProfile, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	p := storage.PushProfile{Preview: true, Mutes: map[string]time.Time{}}
	var preview int64
	err := s.pool.QueryRow(ctx, "SELECT preview FROM push_settings WHERE user_id = $1", user).Scan(&preview)
	switch {
	case err == nil:
		p.Preview = preview != 0
	case !errors.Is(err, pgx.ErrNoRows):
		return p, fmt.Errorf("push profile: %w", classify(err))
	}
	rows, err := s.pool.Query(ctx, "SELECT conv, until FROM push_mutes WHERE user_id = $1", user)
	if err != nil {
		return p, fmt.Errorf("push profile: %w", classify(err))
	}
	for rows.Next() {
		var conv string
		var until *time.Time
		if err := rows.Scan(&conv, &until); err != nil {
			rows.Close()
			return p, fmt.Errorf("push profile: %w", classify(err))
		}
		if until != nil {
			p.Mutes[conv] = *until
		} else {
			p.Mutes[conv] = time.Time{}
		}
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("push profile: %w", classify(err))
	}
	if p.Devices, err = s.pushDevices(ctx, s.pool, user); err != nil {
		return p, fmt.Errorf("push profile: %w", classify(err))
	}
	return p, nil
}

// ClaimPushJobs leases due jobs and the other waiting jobs of their inboxes.
// SKIP LOCKED lets several nodes claim side by side without waiting on each
// other's rows.
func (s *Store) ClaimPushJobs(ctx context.Context, dueTS int64, now, leaseUntil time.Time, limit int) ([]storage.PushJob, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	// The acknowledgements come with the jobs, read through push_acks'
	// primary key: deciding who is pushed takes no second round trip.
	rows, err := s.pool.Query(ctx, `UPDATE push_jobs AS j SET lease_until = $4
		WHERE j.id IN (
			SELECT id FROM push_jobs
			WHERE lease_until <= $2 AND inbox IN (
				SELECT inbox FROM push_jobs WHERE ts <= $1 AND lease_until <= $2 ORDER BY ts LIMIT $3)
			ORDER BY ts LIMIT $3 * 4
			FOR UPDATE SKIP LOCKED)
		RETURNING j.id::text, j.inbox, j.seq, j.sender, j.recipient, j.ts, j.data,
			ARRAY(SELECT a.user_id FROM push_acks a WHERE a.msg_id = j.id)`,
		dueTS, now.UnixMilli(), limit, leaseUntil.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("claim push jobs: %w", classify(err))
	}
	js, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.PushJob, error) {
		var j storage.PushJob
		err := r.Scan(&j.ID, &j.Inbox, &j.Seq, &j.From, &j.To, &j.TS, &j.Data, &j.Acked)
		if len(j.Acked) == 0 {
			j.Acked = nil
		}
		return j, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim push jobs: %w", classify(err))
	}
	sortJobs(js)
	return js, nil
}

// DeletePushJobs removes finished jobs and their acknowledgements, in one
// statement.
func (s *Store) DeletePushJobs(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `WITH acks AS (DELETE FROM push_acks WHERE msg_id = ANY($1::uuid[]))
		DELETE FROM push_jobs WHERE id = ANY($1::uuid[])`, ids); err != nil {
		return fmt.Errorf("delete push jobs: %w", classify(err))
	}
	return nil
}

// insertPushAcks records acknowledgements of messages whose push job is
// queued, in key order: two nodes recording the same acknowledgements (a
// user's phone and laptop, each on its own node) then take the same keys in
// the same order and cannot deadlock.
const insertPushAcks = `INSERT INTO push_acks (msg_id, user_id, at)
	SELECT a.msg_id, a.user_id, a.at FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS a (msg_id, user_id, at)
	WHERE EXISTS (SELECT 1 FROM push_jobs j WHERE j.id = a.msg_id)
	ORDER BY a.msg_id, a.user_id
	ON CONFLICT DO NOTHING`

// RecordPushAcks records acknowledgements of queued jobs in one statement.
func (s *Store) RecordPushAcks(ctx context.Context, acks []storage.PushAck) error {
	valid, dropped, why := storage.ValidPushAcks(acks)
	if len(valid) > 0 {
		ids, users, ats := make([]string, len(valid)), make([]string, len(valid)), make([]time.Time, len(valid))
		now := time.Now()
		for i, a := range valid {
			ids[i], users[i], ats[i] = a.ID, a.User, a.At
			if a.At.IsZero() {
				ats[i] = now
			}
		}
		ctx, cancel := s.opCtx(ctx)
		defer cancel()
		if _, err := s.pool.Exec(ctx, insertPushAcks, ids, users, ats); err != nil {
			return fmt.Errorf("record push acks: %w", classify(err))
		}
	}
	if dropped > 0 {
		return fmt.Errorf("record push acks: %w", storage.DroppedPushAcks(dropped, len(acks), why))
	}
	return nil
}

// CountPushJobs returns the queue's length and its oldest ts.
func (s *Store) CountPushJobs(ctx context.Context) (int64, int64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var n, oldest int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*), coalesce(min(ts), 0) FROM push_jobs").Scan(&n, &oldest); err != nil {
		return 0, 0, fmt.Errorf("count push jobs: %w", classify(err))
	}
	return n, oldest, nil
}

// sortJobs orders jobs oldest first (RETURNING keeps no order).
func sortJobs(js []storage.PushJob) {
	storage.SortPushJobs(js)
}
