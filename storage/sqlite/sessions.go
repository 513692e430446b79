package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// UserTokens returns a user's unexpired tokens, the most recently used
// first (tokens_user finds them).
func (s *Store) UserTokens(ctx context.Context, user string, now time.Time) ([]storage.Token, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, fmt.Errorf("user tokens: %w", err)
	}
	defer cancel()
	rows, err := s.rdb.QueryContext(ctx, `SELECT hash, created_at, expires_at, last_used_at, last_addr, last_agent, last_client
		FROM tokens WHERE user_id = ? AND expires_at > ? ORDER BY last_used_at DESC, created_at DESC`, user, now.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("user tokens: %w", s.readErr(err))
	}
	defer rows.Close()
	var ts []storage.Token
	for rows.Next() {
		t := storage.Token{User: user}
		var created, expires, used int64
		if err := rows.Scan(&t.Hash, &created, &expires, &used, &t.LastAddr, &t.LastAgent, &t.LastClient); err != nil {
			return nil, fmt.Errorf("user tokens: %w", s.readErr(err))
		}
		t.CreatedAt, t.ExpiresAt, t.LastUsedAt = time.UnixMicro(created), time.UnixMicro(expires), time.UnixMicro(used)
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("user tokens: %w", s.readErr(err))
	}
	return ts, nil
}

// TouchTokens records uses of tokens and slides their expiry, in one write.
func (s *Store) TouchTokens(ctx context.Context, uses []storage.TokenUse, idle, max time.Duration) error {
	for _, u := range uses {
		if err := u.Check(); err != nil {
			return fmt.Errorf("touch tokens: %w", err)
		}
	}
	if len(uses) == 0 {
		return nil
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE tokens SET last_used_at = ?1, last_addr = ?2, last_agent = ?3,
				last_client = ?4, expires_at = min(?1 + ?5, created_at + ?6)
			WHERE hash = ?7 AND expires_at > ?1 AND last_used_at <= ?1`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, u := range uses {
			at := u.At.UnixMicro()
			if _, err := st.ExecContext(ctx, at, u.Addr, u.Agent, u.Client, idle.Microseconds(), max.Microseconds(), u.Hash); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch tokens: %w", classify(err))
	}
	return nil
}

// validChunk is the most hashes one query of ValidTokens binds.
const validChunk = 500

// ValidTokens returns the hashes of unexpired tokens among hashes.
func (s *Store) ValidTokens(ctx context.Context, hashes [][]byte, now time.Time) ([][]byte, error) {
	var out [][]byte
	for len(hashes) > 0 {
		n := min(len(hashes), validChunk)
		chunk := hashes[:n]
		hashes = hashes[n:]
		found, err := s.validTokens(ctx, chunk, now)
		if err != nil {
			return nil, err
		}
		out = append(out, found...)
	}
	return out, nil
}

func (s *Store) validTokens(ctx context.Context, hashes [][]byte, now time.Time) ([][]byte, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, fmt.Errorf("valid tokens: %w", err)
	}
	defer cancel()
	args := make([]any, 0, len(hashes)+1)
	args = append(args, now.UnixMicro())
	for _, h := range hashes {
		args = append(args, h)
	}
	rows, err := s.rdb.QueryContext(ctx, "SELECT hash FROM tokens WHERE expires_at > ? AND hash IN (?"+
		strings.Repeat(", ?", len(hashes)-1)+")", args...)
	if err != nil {
		return nil, fmt.Errorf("valid tokens: %w", s.readErr(err))
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("valid tokens: %w", s.readErr(err))
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("valid tokens: %w", s.readErr(err))
	}
	return out, nil
}

// deleteUserTokens deletes a user's tokens but keep and returns their
// hashes.
func deleteUserTokens(ctx context.Context, tx *sql.Tx, user string, keep []byte) ([][]byte, error) {
	rows, err := tx.QueryContext(ctx, "DELETE FROM tokens WHERE user_id = ?1 AND (?2 IS NULL OR hash <> ?2) RETURNING hash",
		user, keep)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// DeleteUserTokens revokes a user's tokens but keep.
func (s *Store) DeleteUserTokens(ctx context.Context, user string, keep []byte) ([][]byte, error) {
	var revoked [][]byte
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		revoked, err = deleteUserTokens(ctx, tx, user, keep)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete user tokens: %w", classify(err))
	}
	return revoked, nil
}

// SetPassword replaces a password hash and revokes the user's tokens but
// keep, in one transaction.
func (s *Store) SetPassword(ctx context.Context, user, passwordHash string, keep []byte) ([][]byte, error) {
	if err := storage.CheckText("password hash", passwordHash); err != nil {
		return nil, fmt.Errorf("set password: %w", err)
	}
	var revoked [][]byte
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE users SET password_hash = ? WHERE id = ? AND deleted_at IS NULL", passwordHash, user)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
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
// write; see storage.Users.
func (s *Store) DeleteUser(ctx context.Context, user string, at time.Time) ([][]byte, error) {
	inbox := protocol.UserInbox(user)
	var revoked [][]byte
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET name = ?, password_hash = '', deleted_at = ?
			WHERE id = ? AND deleted_at IS NULL`, storage.DeletedUserName, at.UnixMicro(), user)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %q: %w", user, storage.ErrNotFound)
		}
		// The writer runs this between appends (runOp): appends after it
		// read the inbox afresh and find it gone (ErrNotFound).
		steps := []struct {
			sql  string
			args []any
		}{
			{"DELETE FROM inboxes WHERE id = ?", []any{inbox}},
			{"DELETE FROM entries WHERE inbox = ?", []any{inbox}},
			{"DELETE FROM push_jobs WHERE inbox = ?", []any{inbox}},
			{"DELETE FROM push_devices WHERE user_id = ?", []any{user}},
			{"DELETE FROM push_settings WHERE user_id = ?", []any{user}},
			{"DELETE FROM push_mutes WHERE user_id = ?", []any{user}},
			{"DELETE FROM read_cursors WHERE user_id = ?", []any{user}},
			// Device cursors: the user's client ids are the id itself or
			// start with "{id}/" (protocol.ClientIDBelongsTo).
			{"DELETE FROM cursors WHERE inbox = ?1 OR client_id = ?2 OR substr(client_id, 1, length(?2) + 1) = ?2 || '/'",
				[]any{inbox, user}},
			{"DELETE FROM presence WHERE user_id = ?", []any{user}},
			{"DELETE FROM contacts WHERE user_id = ?", []any{user}},
			// Its block and contact lists and settings, and its place in
			// others' lists.
			{"DELETE FROM blocks WHERE user_id = ?1 OR peer = ?1", []any{user}},
			{"DELETE FROM contact_list WHERE user_id = ?1 OR peer = ?1", []any{user}},
			{"DELETE FROM consent WHERE user_id = ?", []any{user}},
			{"DELETE FROM dedup WHERE sender = ?", []any{user}},
			// Leaving as a removal: a former member's view of a group ends
			// at its removed_seq (here, the group's last seq).
			{`UPDATE group_members SET removed_seq = coalesce((SELECT last_seq FROM inboxes WHERE id = 'g/' || group_members.group_id), 0)
				WHERE user_id = ? AND removed_seq IS NULL`, []any{user}},
		}
		for _, st := range steps {
			if _, err := tx.ExecContext(ctx, st.sql, st.args...); err != nil {
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
