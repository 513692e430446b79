package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

var _ storage.Groups = (*Store)(nil)

// CreateGroup stores a group, its members and its inbox in one transaction.
func (s *Store) CreateGroup(ctx context.Context, g storage.Group) error {
	if g.History == "" {
		g.History = storage.HistoryJoin
	}
	if err := storage.CheckHistory(g.History); err != nil {
		return fmt.Errorf("create group: %w", err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	users := make([]string, len(g.Members))
	roles := make([]string, len(g.Members))
	for i, m := range g.Members {
		users[i], roles[i] = m.User, m.Role
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO groups (id, name, owner, history) VALUES ($1, $2, $3, $4)", g.ID, g.Name, g.Owner, g.History); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO group_members (group_id, user_id, role)
			SELECT $1, * FROM unnest($2::text[], $3::text[])`, g.ID, users, roles); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO inboxes (id) VALUES ($1)", protocol.GroupInbox(g.ID))
		return err
	})
	if err != nil {
		return fmt.Errorf("create group: %w", classifyRef(err))
	}
	return nil
}

// classifyRef maps a foreign-key violation (an unknown user or group) to
// ErrNotFound, and everything else as classify does.
func classifyRef(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" {
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	}
	return classify(err)
}

const groupColumns = "g.id, g.name, g.owner, g.history, g.created_at, coalesce(i.last_seq, 0)"

// members returns the current members of groups, with the from_seq they
// were added at (groups reads it as 0 in a 'full' group).
func (s *Store) members(ctx context.Context, ids []string) (map[string][]storage.Member, error) {
	rows, err := s.pool.Query(ctx, `SELECT group_id, user_id, role, added_at, from_seq FROM group_members
		WHERE group_id = ANY($1) AND removed_seq IS NULL ORDER BY group_id, user_id`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]storage.Member{}
	for rows.Next() {
		var gid string
		var m storage.Member
		if err := rows.Scan(&gid, &m.User, &m.Role, &m.AddedAt, &m.FromSeq); err != nil {
			return nil, err
		}
		out[gid] = append(out[gid], m)
	}
	return out, rows.Err()
}

func (s *Store) groups(ctx context.Context, where string, arg any) ([]storage.Group, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+groupColumns+" FROM groups g LEFT JOIN inboxes i ON i.id = 'g/' || g.id "+where, arg)
	if err != nil {
		return nil, err
	}
	var gs []storage.Group
	for rows.Next() {
		var g storage.Group
		if err := rows.Scan(&g.ID, &g.Name, &g.Owner, &g.History, &g.CreatedAt, &g.LastSeq); err != nil {
			rows.Close()
			return nil, err
		}
		gs = append(gs, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	ids := make([]string, len(gs))
	for i, g := range gs {
		ids[i] = g.ID
	}
	ms, err := s.members(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i := range gs {
		gs[i].Members = ms[gs[i].ID]
		if gs[i].History == storage.HistoryFull {
			for j := range gs[i].Members {
				gs[i].Members[j].FromSeq = 0
			}
		}
	}
	return gs, nil
}

// GetGroup returns a group with its current members.
func (s *Store) GetGroup(ctx context.Context, id string) (storage.Group, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	gs, err := s.groups(ctx, "WHERE g.id = $1", id)
	if err != nil {
		return storage.Group{}, fmt.Errorf("get group: %w", classify(err))
	}
	if len(gs) == 0 {
		return storage.Group{}, fmt.Errorf("get group: %w", storage.ErrNotFound)
	}
	return gs[0], nil
}

// UserGroups returns the groups a user belongs to, newest activity first.
func (s *Store) UserGroups(ctx context.Context, user string) ([]storage.Group, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	gs, err := s.groups(ctx, `WHERE g.id IN (SELECT group_id FROM group_members WHERE user_id = $1 AND removed_seq IS NULL)
		ORDER BY coalesce(i.last_seq, 0) DESC, g.id`, user)
	if err != nil {
		return nil, fmt.Errorf("user groups: %w", classify(err))
	}
	return gs, nil
}

// GetMembership returns a user's membership of a group.
func (s *Store) GetMembership(ctx context.Context, group, user string) (storage.Membership, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var m storage.Membership
	var removed *int64
	err := s.pool.QueryRow(ctx, `SELECT m.role, m.removed_seq, CASE WHEN g.history = 'full' THEN 0 ELSE m.from_seq END
		FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.group_id = $1 AND m.user_id = $2`, group, user).
		Scan(&m.Role, &removed, &m.FromSeq)
	if err != nil {
		return storage.Membership{}, fmt.Errorf("membership: %w", classify(err))
	}
	m.Current = removed == nil
	if removed != nil {
		m.RemovedSeq = *removed
	}
	return m, nil
}

// AddMember makes user a current member of group, reading from the group
// inbox's next seq. The inbox row is read FOR SHARE: an append to the group
// under way (holding the row) commits first, and the member starts after
// it.
func (s *Store) AddMember(ctx context.Context, group, user, role string) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `INSERT INTO group_members (group_id, user_id, role, from_seq)
		VALUES ($1, $2, $3, coalesce((SELECT last_seq FROM inboxes WHERE id = $4 FOR SHARE), 0) + 1)
		ON CONFLICT (group_id, user_id) DO UPDATE SET role = EXCLUDED.role, removed_seq = NULL, added_at = now(),
			from_seq = EXCLUDED.from_seq
		WHERE group_members.removed_seq IS NOT NULL`, group, user, role, protocol.GroupInbox(group))
	if err != nil {
		return fmt.Errorf("add member: %w", classifyRef(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("add member: %w", storage.ErrExists)
	}
	return nil
}

// RemoveMember ends a current membership.
func (s *Store) RemoveMember(ctx context.Context, group, user string, atSeq int64) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `UPDATE group_members SET removed_seq = $3
		WHERE group_id = $1 AND user_id = $2 AND removed_seq IS NULL`, group, user, atSeq)
	if err != nil {
		return fmt.Errorf("remove member: %w", classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("remove member: %w", storage.ErrNotFound)
	}
	return nil
}

// RenameGroup renames a group.
func (s *Store) RenameGroup(ctx context.Context, id, name string) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, "UPDATE groups SET name = $2 WHERE id = $1", id, name)
	if err != nil {
		return fmt.Errorf("rename group: %w", classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("rename group: %w", storage.ErrNotFound)
	}
	return nil
}

// SetGroupHistory sets a group's history.
func (s *Store) SetGroupHistory(ctx context.Context, id, history string) error {
	if err := storage.CheckHistory(history); err != nil {
		return fmt.Errorf("set group history: %w", err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, "UPDATE groups SET history = $2 WHERE id = $1", id, history)
	if err != nil {
		return fmt.Errorf("set group history: %w", classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set group history: %w", storage.ErrNotFound)
	}
	return nil
}
