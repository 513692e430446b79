package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/parleychat/parley/storage"
)

var _ storage.Push = (*Store)(nil)

// fkNotFound maps a foreign-key violation (an unknown user) to ErrNotFound.
func fkNotFound(err error) error {
	if sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return fmt.Errorf("user: %w", storage.ErrNotFound)
	}
	return classify(err)
}

// upsertPushDevice registers or refreshes a token: a token of another
// user moves only if its session expired (a revoked one took the row with
// it) or its user was deleted; a row with no session stays with its live
// user. No row changed: the token is taken. (The postgres store's
// statement, in SQLite's dialect.)
const upsertPushDevice = `INSERT INTO push_devices (token, user_id, platform, environment, device, session, updated_at)
	VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
	ON CONFLICT (token) DO UPDATE SET user_id = excluded.user_id, platform = excluded.platform,
		environment = excluded.environment, device = excluded.device, session = excluded.session,
		updated_at = excluded.updated_at
	WHERE push_devices.user_id = excluded.user_id
		OR NOT EXISTS (SELECT 1 FROM users u WHERE u.id = push_devices.user_id AND u.deleted_at IS NULL)
		OR (push_devices.session IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.hash = push_devices.session AND t.expires_at > ?7))`

// evictPushDevices deletes a user's tokens beyond the cap ?3, the least
// recently updated first, never the token ?2 just registered.
const evictPushDevices = `DELETE FROM push_devices WHERE user_id = ?1 AND token IN (
	SELECT token FROM push_devices WHERE user_id = ?1
	ORDER BY token = ?2 DESC, updated_at DESC, token DESC LIMIT -1 OFFSET ?3)`

// PutPushDevice registers or refreshes a token bound to d.Session, unless
// another user's live session holds it, and evicts d.User's oldest tokens
// past maxDevices, in one write.
func (s *Store) PutPushDevice(ctx context.Context, d storage.PushDevice, maxDevices int) error {
	if err := d.Check(); err != nil {
		return fmt.Errorf("put push device: %w", err)
	}
	var session []byte
	if len(d.Session) > 0 {
		session = d.Session
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM users WHERE id = ? AND deleted_at IS NULL", d.User).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("user %q: %w", d.User, storage.ErrNotFound)
		}
		if session != nil {
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM tokens WHERE hash = ? AND user_id = ?", session, d.User).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("session of %q: %w", d.User, storage.ErrNotFound)
			}
		}
		res, err := tx.ExecContext(ctx, upsertPushDevice, d.Token, d.User, d.Platform, d.Environment, d.Device, session,
			time.Now().UnixMicro())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return cmpErr(err, storage.ErrPushTokenTaken)
		}
		if maxDevices > 0 {
			_, err = tx.ExecContext(ctx, evictPushDevices, d.User, d.Token, maxDevices)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("put push device: %w", fkNotFound(err))
	}
	return nil
}

// PushDevices returns a user's tokens, least recently updated first.
func (s *Store) PushDevices(ctx context.Context, user string) ([]storage.PushDevice, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, fmt.Errorf("push devices: %w", err)
	}
	defer cancel()
	ds, err := s.pushDevices(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("push devices: %w", s.readErr(err))
	}
	return ds, nil
}

func (s *Store) pushDevices(ctx context.Context, user string) ([]storage.PushDevice, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT token, user_id, platform, environment, device, session, updated_at
		FROM push_devices WHERE user_id = ? ORDER BY updated_at, token`, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ds []storage.PushDevice
	for rows.Next() {
		var d storage.PushDevice
		var us int64
		if err := rows.Scan(&d.Token, &d.User, &d.Platform, &d.Environment, &d.Device, &d.Session, &us); err != nil {
			return nil, err
		}
		d.UpdatedAt = time.UnixMicro(us)
		ds = append(ds, d)
	}
	return ds, rows.Err()
}

// DeletePushDevice removes a user's token, or returns ErrNotFound.
func (s *Store) DeletePushDevice(ctx context.Context, user, token string) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM push_devices WHERE token = ? AND user_id = ?", token, user)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return cmpErr(err, storage.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete push device: %w", classify(err))
	}
	return nil
}

// cmpErr returns err if not nil, else alt.
func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

// RemovePushToken deletes an invalid token unless it was registered again
// after before.
func (s *Store) RemovePushToken(ctx context.Context, token string, before time.Time) (bool, error) {
	if before.IsZero() {
		before = time.Now().Add(24 * time.Hour)
	}
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM push_devices WHERE token = ? AND updated_at <= ?", token, before.UnixMicro())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("remove push token: %w", classify(err))
	}
	return n > 0, nil
}

// SetPushPreview sets a user's preview setting.
func (s *Store) SetPushPreview(ctx context.Context, user string, on bool) error {
	v := 0
	if on {
		v = 1
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO push_settings (user_id, preview) VALUES (?, ?)
			ON CONFLICT (user_id) DO UPDATE SET preview = excluded.preview`, user, v)
		return err
	})
	if err != nil {
		return fmt.Errorf("set push preview: %w", fkNotFound(err))
	}
	return nil
}

// SetPushMute mutes a conversation until until (zero: for ever).
func (s *Store) SetPushMute(ctx context.Context, user, conv string, until time.Time) error {
	var u any
	if !until.IsZero() {
		u = until.UnixMicro()
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO push_mutes (user_id, conv, until) VALUES (?, ?, ?)
			ON CONFLICT (user_id, conv) DO UPDATE SET until = excluded.until`, user, conv, u)
		return err
	})
	if err != nil {
		return fmt.Errorf("set push mute: %w", fkNotFound(err))
	}
	return nil
}

// DeletePushMute unmutes a conversation.
func (s *Store) DeletePushMute(ctx context.Context, user, conv string) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM push_mutes WHERE user_id = ? AND conv = ?", user, conv)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete push mute: %w", classify(err))
	}
	return nil
}

// PushProfile returns a user's settings, mutes and tokens.
func (s *Store) PushProfile(ctx context.Context, user string) (storage.PushProfile, error) {
	p := storage.PushProfile{Preview: true, Mutes: map[string]time.Time{}}
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return p, fmt.Errorf("push profile: %w", err)
	}
	defer cancel()
	var preview int64
	err = s.rdb.QueryRowContext(ctx, "SELECT preview FROM push_settings WHERE user_id = ?", user).Scan(&preview)
	switch {
	case err == nil:
		p.Preview = preview != 0
	case !errors.Is(err, sql.ErrNoRows):
		return p, fmt.Errorf("push profile: %w", s.readErr(err))
	}
	rows, err := s.rdb.QueryContext(ctx, "SELECT conv, until FROM push_mutes WHERE user_id = ?", user)
	if err != nil {
		return p, fmt.Errorf("push profile: %w", s.readErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		var conv string
		var until sql.NullInt64
		if err := rows.Scan(&conv, &until); err != nil {
			return p, fmt.Errorf("push profile: %w", s.readErr(err))
		}
		if until.Valid {
			p.Mutes[conv] = time.UnixMicro(until.Int64)
		} else {
			p.Mutes[conv] = time.Time{}
		}
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("push profile: %w", s.readErr(err))
	}
	if p.Devices, err = s.pushDevices(ctx, user); err != nil {
		return p, fmt.Errorf("push profile: %w", s.readErr(err))
	}
	return p, nil
}

// ClaimPushJobs leases due jobs and the other waiting jobs of their inboxes,
// in one write of the writer (the one process that owns the file).
func (s *Store) ClaimPushJobs(ctx context.Context, dueTS int64, now, leaseUntil time.Time, limit int) ([]storage.PushJob, error) {
	var js []storage.PushJob
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		js = js[:0]
		// The acknowledgements come with each job, as a JSON array.
		rows, err := tx.QueryContext(ctx, `UPDATE push_jobs SET lease_until = ?4
			WHERE id IN (
				SELECT id FROM push_jobs
				WHERE lease_until <= ?2 AND inbox IN (
					SELECT inbox FROM push_jobs WHERE ts <= ?1 AND lease_until <= ?2 ORDER BY ts LIMIT ?3)
				ORDER BY ts LIMIT ?3 * 4)
			RETURNING id, inbox, seq, sender, recipient, ts, data,
				(SELECT json_group_array(a.user_id) FROM push_acks a WHERE a.msg_id = push_jobs.id)`,
			dueTS, now.UnixMilli(), limit, leaseUntil.UnixMilli())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var j storage.PushJob
			var acked string
			if err := rows.Scan(&j.ID, &j.Inbox, &j.Seq, &j.From, &j.To, &j.TS, &j.Data, &acked); err != nil {
				return err
			}
			if acked != "[]" {
				if err := json.Unmarshal([]byte(acked), &j.Acked); err != nil {
					return fmt.Errorf("acknowledgements of job %s: %w", j.ID, err)
				}
			}
			js = append(js, j)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("claim push jobs: %w", classify(err))
	}
	storage.SortPushJobs(js)
	return js, nil
}

// DeletePushJobs removes finished jobs and their acknowledgements.
func (s *Store) DeletePushJobs(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("delete push jobs: %w", err)
	}
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM push_acks WHERE msg_id IN (SELECT value FROM json_each(?))", string(list)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "DELETE FROM push_jobs WHERE id IN (SELECT value FROM json_each(?))", string(list))
		return err
	})
	if err != nil {
		return fmt.Errorf("delete push jobs: %w", classify(err))
	}
	return nil
}

// RecordPushAcks records acknowledgements of queued jobs in one write.
func (s *Store) RecordPushAcks(ctx context.Context, acks []storage.PushAck) error {
	valid, dropped, why := storage.ValidPushAcks(acks)
	if len(valid) > 0 {
		err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
			st, err := tx.PrepareContext(ctx, `INSERT INTO push_acks (msg_id, user_id, at)
				SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM push_jobs WHERE id = ?1)
				ON CONFLICT DO NOTHING`)
			if err != nil {
				return err
			}
			defer st.Close()
			now := time.Now().UnixMicro()
			for _, a := range valid {
				at := now
				if !a.At.IsZero() {
					at = a.At.UnixMicro()
				}
				if _, err := st.ExecContext(ctx, a.ID, a.User, at); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
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
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("count push jobs: %w", err)
	}
	defer cancel()
	var n, oldest int64
	if err := s.rdb.QueryRowContext(ctx, "SELECT count(*), coalesce(min(ts), 0) FROM push_jobs").Scan(&n, &oldest); err != nil {
		return 0, 0, fmt.Errorf("count push jobs: %w", s.readErr(err))
	}
	return n, oldest, nil
}

// insPushJobSQL queues the push job of a new message, in the append's
// transaction.
const insPushJobSQL = `INSERT INTO push_jobs (id, inbox, seq, sender, recipient, ts, data)
	VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
