package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// UserTokens returns a user's unexpired tokens, the most recently used
// first (tokens_user finds them).
func (s *Store) UserTokens(ctx context.Context, user string, now time.Time) ([]storage.Token, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT hash, created_at, expires_at, last_used_at, last_addr, last_agent, last_client
		FROM tokens WHERE user_id = $1 AND expires_at > $2 ORDER BY last_used_at DESC, created_at DESC`, user, now)
	if err != nil {
		return nil, fmt.Errorf("user tokens: %w", classify(err))
	}
	ts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Token, error) {
		t := storage.Token{User: user}
		err := row.Scan(&t.Hash, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt, &t.LastAddr, &t.LastAgent, &t.LastClient)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("user tokens: %w", classify(err))
	}
	return ts, nil
}

// TouchTokens records uses of tokens and slides their expiry, in one
// statement.
func (s *Store) TouchTokens(ctx context.Context, uses []storage.TokenUse, idle, max time.Duration) error {
	uses, err := latestUses(uses)
	if err != nil || len(uses) == 0 {
		return err
	}
	hashes := make([][]byte, len(uses))
	ats := make([]time.Time, len(uses))
	addrs, agents, clients := make([]string, len(uses)), make([]string, len(uses)), make([]string, len(uses))
	for i, u := range uses {
		hashes[i], ats[i], addrs[i], agents[i], clients[i] = u.Hash, u.At, u.Addr, u.Agent, u.Client
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err = s.pool.Exec(ctx, `UPDATE tokens t SET last_used_at = u.at, last_addr = u.addr, last_agent = u.agent,
			last_client = u.client,
			expires_at = LEAST(u.at + $6::bigint * interval '1 microsecond', t.created_at + $7::bigint * interval '1 microsecond')
		FROM unnest($1::bytea[], $2::timestamptz[], $3::text[], $4::text[], $5::text[]) AS u(hash, at, addr, agent, client)
		WHERE t.hash = u.hash AND t.expires_at > u.at AND t.last_used_at <= u.at`,
		hashes, ats, addrs, agents, clients, idle.Microseconds(), max.Microseconds())
	if err != nil {
		return fmt.Errorf("touch tokens: %w", classify(err))
	}
	return nil
}

// latestUses checks uses and keeps the latest use of each token.
func latestUses(uses []storage.TokenUse) ([]storage.TokenUse, error) {
	latest := make(map[string]int, len(uses))
	out := make([]storage.TokenUse, 0, len(uses))
	for _, u := range uses {
		if err := u.Check(); err != nil {
			return nil, fmt.Errorf("touch tokens: %w", err)
		}
		if i, ok := latest[string(u.Hash)]; ok {
			if u.At.After(out[i].At) {
				out[i] = u
			}
			continue
		}
		latest[string(u.Hash)] = len(out)
		out = append(out, u)
	}
	return out, nil
}

// ValidTokens returns the hashes of unexpired tokens among hashes.
func (s *Store) ValidTokens(ctx context.Context, hashes [][]byte, now time.Time) ([][]byte, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT hash FROM tokens WHERE hash = ANY($1) AND expires_at > $2", hashes, now)
	if err != nil {
		return nil, fmt.Errorf("valid tokens: %w", classify(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("valid tokens: %w", classify(err))
	}
	return out, nil
}

// deleteUserTokens deletes a user's tokens but keep and returns their
// hashes.
func deleteUserTokens(ctx context.Context, q querier, user string, keep []byte) ([][]byte, error) {
	rows, err := q.Query(ctx, "DELETE FROM tokens WHERE user_id = $1 AND ($2::bytea IS NULL OR hash <> $2) RETURNING hash",
		user, keep)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[[]byte])
}

// DeleteUserTokens revokes a user's tokens but keep.
func (s *Store) DeleteUserTokens(ctx context.Context, user string, keep []byte) ([][]byte, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	hashes, err := deleteUserTokens(ctx, s.pool, user, keep)
	if err != nil {
		return nil, fmt.Errorf("delete user tokens: %w", classify(err))
	}
	return hashes, nil
}

// SetPassword replaces a password hash and revokes the user's tokens but
// keep, in one transaction.
func (s *Store) SetPassword(ctx context.Context, user, passwordHash string, keep []byte) ([][]byte, error) {
	if err := storage.CheckText("password hash", passwordHash); err != nil {
		return nil, fmt.Errorf("set password: %w", err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var revoked [][]byte
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE users SET password_hash = $2 WHERE id = $1 AND deleted_at IS NULL", user, passwordHash)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("user %q: %w", user, storage.ErrNotFound)
		}
		revoked, err = deleteUserTokens(ctx, tx, user, keep)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("set password: %w", classify(err))
	}
	return revoked, nil
}

// DeleteUser deletes an account's data and leaves its tombstone, in one
// transaction; see storage.Users.
func (s *Store) DeleteUser(ctx context.Context, user string, at time.Time) ([][]byte, error) {
	inbox := protocol.UserInbox(user)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var revoked [][]byte
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET name = $2, password_hash = '', deleted_at = $3
			WHERE id = $1 AND deleted_at IS NULL`, user, storage.DeletedUserName, at)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("user %q: %w", user, storage.ErrNotFound)
		}
		// The inbox's counter row first: deleting it waits for the writers
		// appending to it (they lock it), and appends after it find no
		// inbox (ErrNotFound), so no entry lands in the inbox once its
		// entries are deleted.
		steps := []struct {
			sql  string
			args []any
		}{
			{"DELETE FROM inboxes WHERE id = $1", []any{inbox}},
			{"DELETE FROM entries WHERE inbox = $1", []any{inbox}},
			{"DELETE FROM push_jobs WHERE inbox = $1", []any{inbox}},
			{"DELETE FROM push_devices WHERE user_id = $1", []any{user}},
			{"DELETE FROM push_settings WHERE user_id = $1", []any{user}},
			{"DELETE FROM push_mutes WHERE user_id = $1", []any{user}},
			{"DELETE FROM read_cursors WHERE user_id = $1", []any{user}},
			// Device cursors: the user's client ids are the id itself or
			// start with "{id}/" (protocol.ClientIDBelongsTo).
			{"DELETE FROM cursors WHERE inbox = $1 OR client_id = $2 OR starts_with(client_id, $2 || '/')", []any{inbox, user}},
			{"DELETE FROM presence WHERE user_id = $1", []any{user}},
			{"DELETE FROM contacts WHERE user_id = $1", []any{user}},
			// Its block and contact lists and settings, and its place in
			// others' lists.
			{"DELETE FROM blocks WHERE user_id = $1 OR peer = $1", []any{user}},
			{"DELETE FROM contact_list WHERE user_id = $1 OR peer = $1", []any{user}},
			{"DELETE FROM consent WHERE user_id = $1", []any{user}},
			{"DELETE FROM dedup WHERE sender = $1", []any{user}},
			// Leaving as a removal: a former member's view of a group ends
			// at its removed_seq (here, the group's last seq).
			{`UPDATE group_members gm SET removed_seq = coalesce((SELECT last_seq FROM inboxes WHERE id = 'g/' || gm.group_id), 0)
				WHERE user_id = $1 AND removed_seq IS NULL`, []any{user}},
		}
		for _, st := range steps {
			if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
				return err
			}
		}
		revoked, err = deleteUserTokens(ctx, tx, user, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete user: %w", classify(err))
	}
	return revoked, nil
}
