package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/parleychat/parley/storage"
)

var _ storage.Consent = (*Store)(nil)

// addPeer inserts (user, peer) into a list table (blocks, contact_list)
// when both users are live; it is not an error when the row exists.
func (s *Store) addPeer(ctx context.Context, table, user, peer string, at time.Time) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var live int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM users WHERE id IN (?, ?) AND deleted_at IS NULL", user, peer).Scan(&live); err != nil {
			return err
		}
		if live < 2 && !(user == peer && live == 1) {
			return storage.ErrNotFound
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (user_id, peer, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
			user, peer, at.UnixMicro())
		return err
	})
	if err != nil {
		return classify(err)
	}
	return nil
}

func (s *Store) deletePeer(ctx context.Context, table, user, peer string) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE user_id = ? AND peer = ?", user, peer)
		return err
	})
	if err != nil {
		return classify(err)
	}
	return nil
}

func (s *Store) peers(ctx context.Context, table, user string) ([]storage.Peer, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.rdb.QueryContext(ctx, "SELECT peer, created_at FROM "+table+" WHERE user_id = ? ORDER BY created_at, peer", user)
	if err != nil {
		return nil, s.readErr(err)
	}
	defer rows.Close()
	var ps []storage.Peer
	for rows.Next() {
		var p storage.Peer
		var us int64
		if err := rows.Scan(&p.User, &us); err != nil {
			return nil, s.readErr(err)
		}
		p.At = time.UnixMicro(us)
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(err)
	}
	return ps, nil
}

// Block adds peer to user's block list.
func (s *Store) Block(ctx context.Context, user, peer string, at time.Time) error {
	if err := s.addPeer(ctx, "blocks", user, peer, at); err != nil {
		return fmt.Errorf("block: %w", err)
	}
	return nil
}

// Unblock removes peer from user's block list.
func (s *Store) Unblock(ctx context.Context, user, peer string) error {
	if err := s.deletePeer(ctx, "blocks", user, peer); err != nil {
		return fmt.Errorf("unblock: %w", err)
	}
	return nil
}

// Blocks returns user's block list, oldest first.
func (s *Store) Blocks(ctx context.Context, user string) ([]storage.Peer, error) {
	ps, err := s.peers(ctx, "blocks", user)
	if err != nil {
		return nil, fmt.Errorf("blocks: %w", err)
	}
	return ps, nil
}

// PutContact adds contact to user's contact list.
func (s *Store) PutContact(ctx context.Context, user, contact string, at time.Time) error {
	if err := s.addPeer(ctx, "contact_list", user, contact, at); err != nil {
		return fmt.Errorf("put contact: %w", err)
	}
	return nil
}

// DeleteContact removes contact from user's contact list.
func (s *Store) DeleteContact(ctx context.Context, user, contact string) error {
	if err := s.deletePeer(ctx, "contact_list", user, contact); err != nil {
		return fmt.Errorf("delete contact: %w", err)
	}
	return nil
}

// Contacts returns user's contact list, oldest first.
func (s *Store) Contacts(ctx context.Context, user string) ([]storage.Peer, error) {
	ps, err := s.peers(ctx, "contact_list", user)
	if err != nil {
		return nil, fmt.Errorf("contacts: %w", err)
	}
	return ps, nil
}

// IsContact reports whether contact is in user's contact list.
func (s *Store) IsContact(ctx context.Context, user, contact string) (bool, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return false, fmt.Errorf("is contact: %w", err)
	}
	defer cancel()
	var ok bool
	if err := s.rdb.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM contact_list WHERE user_id = ? AND peer = ?)",
		user, contact).Scan(&ok); err != nil {
		return false, fmt.Errorf("is contact: %w", s.readErr(err))
	}
	return ok, nil
}

// SetGroupAdds sets who may add user to groups.
func (s *Store) SetGroupAdds(ctx context.Context, user, setting string) error {
	if !storage.ValidGroupAdds(setting) {
		return fmt.Errorf("set group adds: %w: %q", storage.ErrInvalid, setting)
	}
	err := s.writeOne(ctx, fmt.Errorf("user %s: %w", user, storage.ErrNotFound), `INSERT INTO consent (user_id, group_adds)
		SELECT id, ? FROM users WHERE id = ? AND deleted_at IS NULL
		ON CONFLICT (user_id) DO UPDATE SET group_adds = excluded.group_adds`, setting, user)
	if err != nil {
		return fmt.Errorf("set group adds: %w", classify(err))
	}
	return nil
}

// GroupAdds returns who may add user to groups.
func (s *Store) GroupAdds(ctx context.Context, user string) (string, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return "", fmt.Errorf("group adds: %w", err)
	}
	defer cancel()
	var g string
	if err := s.rdb.QueryRowContext(ctx, `SELECT coalesce(c.group_adds, ?) FROM users u
		LEFT JOIN consent c ON c.user_id = u.id WHERE u.id = ?`, storage.GroupAddsEveryone, user).Scan(&g); err != nil {
		return "", fmt.Errorf("group adds: %w", s.readErr(err))
	}
	return g, nil
}

// Stances returns each of users' stance towards other, in one query.
func (s *Store) Stances(ctx context.Context, users []string, other string) (map[string]storage.Stance, error) {
	out := make(map[string]storage.Stance, len(users))
	if len(users) == 0 {
		return out, nil
	}
	ids, err := json.Marshal(users)
	if err != nil {
		return nil, fmt.Errorf("stances: %w", err)
	}
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, fmt.Errorf("stances: %w", err)
	}
	defer cancel()
	rows, err := s.rdb.QueryContext(ctx, `SELECT u.id,
			EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.id AND b.peer = ?2),
			EXISTS (SELECT 1 FROM contact_list l WHERE l.user_id = u.id AND l.peer = ?2),
			coalesce(c.group_adds, ?3)
		FROM users u LEFT JOIN consent c ON c.user_id = u.id
		WHERE u.id IN (SELECT value FROM json_each(?1))`, string(ids), other, storage.GroupAddsEveryone)
	if err != nil {
		return nil, fmt.Errorf("stances: %w", s.readErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var st storage.Stance
		if err := rows.Scan(&u, &st.Blocked, &st.Contact, &st.GroupAdds); err != nil {
			return nil, fmt.Errorf("stances: %w", s.readErr(err))
		}
		out[u] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stances: %w", s.readErr(err))
	}
	return out, nil
}
