package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/storage"
)

var _ storage.Consent = (*Store)(nil)

// addPeer inserts (user, peer) into a list table (blocks, contact_list)
// when both users are live; it is not an error when the row exists.
func (s *Store) addPeer(ctx context.Context, table, user, peer string, at time.Time) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var live int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM users WHERE id IN ($1, $2) AND deleted_at IS NULL", user, peer).Scan(&live); err != nil {
			return err
		}
		if live < 2 && !(user == peer && live == 1) {
			return storage.ErrNotFound
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+table+" (user_id, peer, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
			user, peer, at)
		return err
	})
	if err != nil {
		return classifyRef(err)
	}
	return nil
}

func (s *Store) deletePeer(ctx context.Context, table, user, peer string) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, "DELETE FROM "+table+" WHERE user_id = $1 AND peer = $2", user, peer); err != nil {
		return classify(err)
	}
	return nil
}

func (s *Store) peers(ctx context.Context, table, user string) ([]storage.Peer, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT peer, created_at FROM "+table+" WHERE user_id = $1 ORDER BY created_at, peer", user)
	if err != nil {
		return nil, classify(err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Peer, error) {
		var p storage.Peer
		err := r.Scan(&p.User, &p.At)
		return p, err
	})
	if err != nil {
		return nil, classify(err)
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
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var ok bool
	err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM contact_list WHERE user_id = $1 AND peer = $2)", user, contact).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("is contact: %w", classify(err))
	}
	return ok, nil
}

// SetGroupAdds sets who may add user to groups.
func (s *Store) SetGroupAdds(ctx context.Context, user, setting string) error {
	if !storage.ValidGroupAdds(setting) {
		return fmt.Errorf("set group adds: %w: %q", storage.ErrInvalid, setting)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `INSERT INTO consent (user_id, group_adds)
		SELECT id, $2 FROM users WHERE id = $1 AND deleted_at IS NULL
		ON CONFLICT (user_id) DO UPDATE SET group_adds = EXCLUDED.group_adds`, user, setting)
	if err != nil {
		return fmt.Errorf("set group adds: %w", classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set group adds: user %s: %w", user, storage.ErrNotFound)
	}
	return nil
}

// GroupAdds returns who may add user to groups.
func (s *Store) GroupAdds(ctx context.Context, user string) (string, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var g string
	err := s.pool.QueryRow(ctx, `SELECT coalesce(c.group_adds, $2) FROM users u
		LEFT JOIN consent c ON c.user_id = u.id WHERE u.id = $1`, user, storage.GroupAddsEveryone).Scan(&g)
	if err != nil {
		return "", fmt.Errorf("group adds: %w", classify(err))
	}
	return g, nil
}

// Stances returns each of users' stance towards other, in one query.
func (s *Store) Stances(ctx context.Context, users []string, other string) (map[string]storage.Stance, error) {
	out := make(map[string]storage.Stance, len(users))
	if len(users) == 0 {
		return out, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT u.id,
			EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.id AND b.peer = $2),
			EXISTS (SELECT 1 FROM contact_list l WHERE l.user_id = u.id AND l.peer = $2),
			coalesce(c.group_adds, $3)
		FROM users u LEFT JOIN consent c ON c.user_id = u.id
		WHERE u.id = ANY($1)`, users, other, storage.GroupAddsEveryone)
	if err != nil {
		return nil, fmt.Errorf("stances: %w", classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var st storage.Stance
		if err := rows.Scan(&u, &st.Blocked, &st.Contact, &st.GroupAdds); err != nil {
			return nil, fmt.Errorf("stances: %w", classify(err))
		}
		out[u] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stances: %w", classify(err))
	}
	return out, nil
}
