package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

var _ storage.Groups = (*Store)(nil)

// classifyRef maps a foreign-key violation (an unknown user or group) to
// ErrNotFound, as it does the trigger refusing a deleted user
// (008_sessions.sql), and everything else as classify does.
func classifyRef(err error) error {
	if c := sqliteCode(err); c == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY || c == sqlite3.SQLITE_CONSTRAINT_TRIGGER {
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	}
	return classify(err)
}

// CreateGroup stores a group, its members and its inbox in one transaction.
func (s *Store) CreateGroup(ctx context.Context, g storage.Group) error {
	if g.History == "" {
		g.History = storage.HistoryJoin
	}
	if err := storage.CheckHistory(g.History); err != nil {
		return fmt.Errorf("create group: %w", err)
	}
	now := time.Now().UnixMicro()
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO groups (id, name, owner, history, created_at) VALUES (?, ?, ?, ?, ?)",
			g.ID, g.Name, g.Owner, g.History, now); err != nil {
			return err
		}
		for _, m := range g.Members {
			if _, err := tx.ExecContext(ctx, "INSERT INTO group_members (group_id, user_id, role, added_at) VALUES (?, ?, ?, ?)",
				g.ID, m.User, m.Role, now); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO inboxes (id) VALUES (?)", protocol.GroupInbox(g.ID))
		return err
	})
	if err != nil {
		return fmt.Errorf("create group: %w", classifyRef(err))
	}
	return nil
}

func (s *Store) groups(ctx context.Context, where string, args ...any) ([]storage.Group, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT g.id, g.name, g.owner, g.history, g.created_at, coalesce(i.last_seq, 0)
		FROM groups g LEFT JOIN inboxes i ON i.id = 'g/' || g.id `+where, args...)
	if err != nil {
		return nil, err
	}
	var gs []storage.Group
	for rows.Next() {
		var g storage.Group
		var created int64
		if err := rows.Scan(&g.ID, &g.Name, &g.Owner, &g.History, &created, &g.LastSeq); err != nil {
			rows.Close()
			return nil, err
		}
		g.CreatedAt = time.UnixMicro(created)
		gs = append(gs, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(gs) == 0 {
		return nil, nil
	}
	ids := make([]any, len(gs))
	for i, g := range gs {
		ids[i] = g.ID
	}
	mrows, err := s.rdb.QueryContext(ctx, `SELECT group_id, user_id, role, added_at, from_seq FROM group_members
		WHERE removed_seq IS NULL AND group_id IN (?`+strings.Repeat(",?", len(ids)-1)+`) ORDER BY group_id, user_id`, ids...)
	if err != nil {
		return nil, err
	}
	defer mrows.Close()
	byID := map[string][]storage.Member{}
	for mrows.Next() {
		var gid string
		var m storage.Member
		var added int64
		if err := mrows.Scan(&gid, &m.User, &m.Role, &added, &m.FromSeq); err != nil {
			return nil, err
		}
		m.AddedAt = time.UnixMicro(added)
		byID[gid] = append(byID[gid], m)
	}
	if err := mrows.Err(); err != nil {
		return nil, err
	}
	for i := range gs {
		gs[i].Members = byID[gs[i].ID]
		if gs[i].History == storage.HistoryFull {
			for j := range gs[i].Members {
				gs[i].Members[j].FromSeq = 0 // a 'full' group reads from_seq as 0
			}
		}
	}
	return gs, nil
}

// GetGroup returns a group with its current members.
func (s *Store) GetGroup(ctx context.Context, id string) (storage.Group, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return storage.Group{}, fmt.Errorf("get group: %w", err)
	}
	defer cancel()
	gs, err := s.groups(ctx, "WHERE g.id = ?", id)
	if err != nil {
		return storage.Group{}, fmt.Errorf("get group: %w", s.readErr(err))
	}
	if len(gs) == 0 {
		return storage.Group{}, fmt.Errorf("get group: %w", storage.ErrNotFound)
	}
	return gs[0], nil
}

// UserGroups returns the groups a user belongs to, newest activity first.
func (s *Store) UserGroups(ctx context.Context, user string) ([]storage.Group, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, fmt.Errorf("user groups: %w", err)
	}
	defer cancel()
	gs, err := s.groups(ctx, `WHERE g.id IN (SELECT group_id FROM group_members WHERE user_id = ? AND removed_seq IS NULL)
		ORDER BY coalesce(i.last_seq, 0) DESC, g.id`, user)
	if err != nil {
		return nil, fmt.Errorf("user groups: %w", s.readErr(err))
	}
	return gs, nil
}

// GetMembership returns a user's membership of a group.
func (s *Store) GetMembership(ctx context.Context, group, user string) (storage.Membership, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return storage.Membership{}, fmt.Errorf("membership: %w", err)
	}
	defer cancel()
	var m storage.Membership
	var removed sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT m.role, m.removed_seq, CASE WHEN g.history = 'full' THEN 0 ELSE m.from_seq END
		FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.group_id = ? AND m.user_id = ?`,
		group, user).Scan(&m.Role, &removed, &m.FromSeq); err != nil {
		return storage.Membership{}, fmt.Errorf("membership: %w", s.readErr(err))
	}
	m.Current = !removed.Valid
	m.RemovedSeq = removed.Int64
	return m, nil
}

// AddMember makes user a current member of group, reading from the group
// inbox's next seq (read in the writer's transaction, which no append
// interleaves with).
func (s *Store) AddMember(ctx context.Context, group, user, role string) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO group_members (group_id, user_id, role, added_at, from_seq)
			VALUES (?, ?, ?, ?, coalesce((SELECT last_seq FROM inboxes WHERE id = ?), 0) + 1)
			ON CONFLICT (group_id, user_id) DO UPDATE SET role = excluded.role, removed_seq = NULL, added_at = excluded.added_at,
				from_seq = excluded.from_seq
			WHERE group_members.removed_seq IS NOT NULL`, group, user, role, time.Now().UnixMicro(), protocol.GroupInbox(group))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return storage.ErrExists
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add member: %w", classifyRef(err))
	}
	return nil
}

// RemoveMember ends a current membership.
func (s *Store) RemoveMember(ctx context.Context, group, user string, atSeq int64) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE group_members SET removed_seq = ?
			WHERE group_id = ? AND user_id = ? AND removed_seq IS NULL`, atSeq, group, user)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return storage.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove member: %w", classify(err))
	}
	return nil
}

// RenameGroup renames a group.
func (s *Store) RenameGroup(ctx context.Context, id, name string) error {
	err := s.writeOne(ctx, storage.ErrNotFound, "UPDATE groups SET name = ? WHERE id = ?", name, id)
	if err != nil {
		return fmt.Errorf("rename group: %w", classify(err))
	}
	return nil
}

// SetGroupHistory sets a group's history.
func (s *Store) SetGroupHistory(ctx context.Context, id, history string) error {
	if err := storage.CheckHistory(history); err != nil {
		return fmt.Errorf("set group history: %w", err)
	}
	err := s.writeOne(ctx, storage.ErrNotFound, "UPDATE groups SET history = ? WHERE id = ?", history, id)
	if err != nil {
		return fmt.Errorf("set group history: %w", classify(err))
	}
	return nil
}
